"""`LSMConfig`: everything needed to rebuild a SpeechLM, saved as the checkpoint's `config.json`.

It names the encoder and LLM it was built on (a local folder, an embedded default such as
`whisper-tiny.en`, or `./encoder` / `./llm` for weights bundled inside the checkpoint) and also
keeps their full architecture configs, so a checkpoint describes itself even when the base
weights live elsewhere.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

CONNECTORS = ("window_qformer", "stack_mlp")
FINETUNE_MODES = ("lora", "full", "frozen")
PROMPT_FORMATS = ("chat_template", "vicuna_v1.1")


class LSMConfig(PretrainedConfig):
    """Configuration of a large speech-text model: encoder -> connector -> causal LLM."""

    model_type = "selfpowered_lsm"

    def __init__(
        self,
        encoder_name_or_path: str | None = None,
        llm_name_or_path: str | None = None,
        encoder_config: dict[str, Any] | None = None,
        llm_config: dict[str, Any] | None = None,
        encoder_frame_rate: float = 50.0,
        connector: str = "window_qformer",
        window_seconds: float = 1 / 3,
        queries_per_window: int = 1,
        qformer_layers: int = 2,
        qformer_hidden_size: int = 768,
        qformer_heads: int = 12,
        qformer_ffn_size: int = 3072,
        stack_factor: int = 4,
        mlp_hidden_size: int = 1024,
        connector_dropout: float = 0.1,
        finetune: str = "lora",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | None = None,
        train_encoder: bool = False,
        prompt_format: str = "chat_template",
        speech_placeholder: str = "<speech>",
        system_prompt: str | None = None,
        **kwargs: Any,
    ) -> None:
        if connector not in CONNECTORS:
            raise ValueError(f"connector must be one of {CONNECTORS}, got {connector!r}")
        if finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {finetune!r}")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
        if window_seconds <= 0 or queries_per_window < 1 or stack_factor < 1:
            raise ValueError("window_seconds must be > 0; queries_per_window and stack_factor >= 1")
        self.encoder_name_or_path = encoder_name_or_path
        self.llm_name_or_path = llm_name_or_path
        self.encoder_config = encoder_config or {}
        self.llm_config = llm_config or {}
        self.encoder_frame_rate = encoder_frame_rate
        self.connector = connector
        self.window_seconds = window_seconds
        self.queries_per_window = queries_per_window
        self.qformer_layers = qformer_layers
        self.qformer_hidden_size = qformer_hidden_size
        self.qformer_heads = qformer_heads
        self.qformer_ffn_size = qformer_ffn_size
        self.stack_factor = stack_factor
        self.mlp_hidden_size = mlp_hidden_size
        self.connector_dropout = connector_dropout
        self.finetune = finetune
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_target_modules = list(lora_target_modules or ["q_proj", "v_proj"])
        self.train_encoder = train_encoder
        self.prompt_format = prompt_format
        self.speech_placeholder = speech_placeholder
        self.system_prompt = system_prompt
        super().__init__(**kwargs)

    @property
    def encoder_hidden_size(self) -> int:
        return int(self.encoder_config["d_model"])

    @property
    def llm_hidden_size(self) -> int:
        return int(self.llm_config["hidden_size"])

    @property
    def window_frames(self) -> int:
        """Encoder frames per Q-Former window (17 at Whisper's 50 Hz for 1/3 s)."""
        return max(1, round(self.window_seconds * self.encoder_frame_rate))


# Lets AutoConfig / AutoTokenizer read a checkpoint folder's config.json without guessing.
AutoConfig.register(LSMConfig.model_type, LSMConfig, exist_ok=True)
