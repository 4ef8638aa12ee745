"""Configs of the model itself: its architecture (one definition, shared with LSMConfig) and decoding."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from selfpowered.assets import DEFAULT_ENCODER, DEFAULT_LLM
from selfpowered.config.base import StrictModel

# Defined once, used by the model's config and by `selfpowered features` (which caches the states).
SpeechStates = Annotated[
    Literal["encoder", "decoder"],
    Field(
        description="what the frozen Whisper hands the connector: its encoder frames (the paper), or decoder: the "
        "states of its own greedy decoder, one per text token it writes (model/whisper_decoder.py); needs stack_mlp"
    ),
]
HearingComputeType = Annotated[
    Literal["int8", "float32", "int8_float32", "float16", "int8_float16"],
    Field(
        description="CTranslate2 compute type of the Whisper that hears each clip once (model/hearing.py): int8 "
        "(default; several times PyTorch's speed on a CPU), float32, or the GPU types float16 / int8_float16"
    ),
]
HearingWindow = Annotated[
    float | None,
    Field(
        ge=1,
        le=30,
        description="seconds of Whisper's silent padding after the speech when it hears a clip (null: the whole "
        "30 s window it was trained with, 3x the cost; bench/hearing_window.py)",
    ),
]
DecodedTokensPerSecond = Annotated[
    float,
    Field(
        gt=0,
        le=14,  # 30 s x 14 + 2 stays inside Whisper's 448 decoder positions
        description="speech_states: decoder: the most text tokens per second of audio the decoder may write; the "
        "prompt reserves slots for them and masks the unused ones",
    ),
]


class ModelConfig(StrictModel):
    """How to build a fresh SpeechLM; defaults are the embedded CPU model. The one definition of
    these fields: `LSMConfig` (the checkpoint's config.json) validates its own through this model."""

    encoder: str = Field(DEFAULT_ENCODER, description="Whisper folder or embedded name")
    llm: str = Field(DEFAULT_LLM, description="causal LM folder or embedded name")
    connector: Literal["window_qformer", "stack_mlp", "utterance_qformer", "none"] = Field(
        "window_qformer",
        description="window_qformer (the paper: queries per 1/3 s window), stack_mlp (Ultravox), utterance_qformer "
        "(`utterance_queries` learned queries over the whole utterance: a fixed number of slots for how it sounds), "
        "or none (speech_tokens: transcript alone: the LLM reads Whisper's words and nothing else)",
    )
    utterance_queries: int = Field(8, ge=1, le=64, description="slots of the utterance_qformer")
    window_seconds: float = Field(1 / 3, gt=0, description="Q-Former window length in real seconds")
    queries_per_window: int = Field(1, ge=1)
    qformer_layers: int = Field(2, ge=1)
    qformer_hidden_size: int = Field(768, ge=8)
    qformer_heads: int = Field(12, ge=1)
    qformer_ffn_size: int = Field(3072, ge=8)
    stack_factor: int = Field(4, ge=1, description="frames stacked per token (stack_mlp)")
    tokens_per_stack: int = Field(
        1,
        ge=1,
        description="speech tokens each stack becomes (stack_mlp); 2 lets CTC spell more LLM tokens than there "
        "are states, as `speech_states: decoder` needs",
    )
    mlp_hidden_size: int = Field(1024, ge=8)
    connector_dropout: float = Field(0.1, ge=0, lt=1)
    speech_states: SpeechStates = "encoder"
    decoded_tokens_per_second: DecodedTokensPerSecond = 8.0
    speech_tokens: Literal["connector", "ctc_posterior", "whisper_text", "transcript"] = Field(
        "connector",
        description="what the LLM reads: the connector's outputs (the paper); transcript: its own tokens of the "
        "transcript Whisper heard (once per clip, model/hearing.py) in the cascade's prompt, token for token, and "
        "then the connector's slots over Whisper's encoder states (connector: utterance_qformer, or none); "
        "ctc_posterior: the CTC head's "
        "posterior mixture of the LLM's own token embeddings, blank and repeated slots masked out (model/ctc.py); "
        "whisper_text: the LLM's own embeddings of the text Whisper's decoder wrote, plus the connector's output "
        "through a gate that starts at 0 (model/token_bridge.py; needs speech_states: decoder, stack_factor: 1, "
        "tokens_per_stack: the LLM pieces a Whisper token may take on average, 2)",
    )
    finetune: Literal["lora", "full", "frozen"] = "lora"
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    train_encoder: bool = False
    hearing_compute_type: HearingComputeType = "int8"
    hearing_window: HearingWindow = 10.0
    prompt_format: Literal["chat_template", "vicuna_v1.1"] = "chat_template"
    system_prompt: str | None = None

    @model_validator(mode="after")
    def _decoder_states_fit(self) -> ModelConfig:
        if self.speech_states == "decoder":
            if self.connector != "stack_mlp":
                raise ValueError(
                    "speech_states: decoder gives one state per decoded token, not frames: it needs connector: "
                    f"stack_mlp (got {self.connector})"
                )
            if self.train_encoder:
                raise ValueError(
                    "speech_states: decoder decodes greedily, without gradients: train_encoder must be false"
                )
        if self.speech_tokens == "transcript" and self.connector not in ("utterance_qformer", "none"):
            raise ValueError(
                "speech_tokens: transcript reads Whisper's words as tokens; its connector adds a fixed number of "
                f"slots for the rest: connector: utterance_qformer, or none (got {self.connector})"
            )
        if self.speech_tokens == "transcript" and (self.speech_states != "encoder" or self.train_encoder):
            raise ValueError(
                "speech_tokens: transcript hears each clip once through CTranslate2 (its encoder states are its last "
                "layer, frozen): it needs speech_states: encoder and train_encoder: false"
            )
        if self.connector == "none" and self.speech_tokens != "transcript":
            raise ValueError("connector: none leaves the LLM nothing to hear unless speech_tokens: transcript")
        if self.speech_tokens == "whisper_text":
            if self.speech_states != "decoder":
                raise ValueError(
                    "speech_tokens: whisper_text reads Whisper's decoded text: it needs speech_states: decoder"
                )
            if self.stack_factor != 1:
                raise ValueError(
                    "speech_tokens: whisper_text adds the connector's output to each decoded token's pieces: it needs "
                    f"stack_factor: 1, one stack per token (got {self.stack_factor})"
                )
        return self

    @classmethod
    def architecture_fields(cls) -> tuple[str, ...]:
        """Every field but the two base-model references: what a checkpoint's config stores."""
        return tuple(name for name in cls.model_fields if name not in ("encoder", "llm"))


class GenerationSettings(StrictModel):
    """Decoding settings (the paper decodes greedily with max_new_tokens 128)."""

    max_new_tokens: int = Field(128, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    no_repeat_ngram_size: int = Field(
        0,
        ge=0,
        description="loop guard: never repeat an n-gram of the answer (0 = off, the paper's plain greedy; "
        "text/decoding.py)",
    )
    batch_size: int = Field(8, ge=1)


class ChatConfig(StrictModel):
    """`selfpowered chat`: one question to a checkpoint, from speech or from text."""

    model: str = Field(..., description="checkpoint folder written by SpeechLM.save_pretrained")
    audio: list[str] = Field(default_factory=list, description="audio files (speech mode)")
    instruction: str | None = Field(None, description="text instruction (speech mode) or prompt (text mode)")
    text_mode: bool = Field(False, description="run the LLM on the instruction alone, no speech")
    use_adapter: bool = True
    device: str = "cpu"
    generation: GenerationSettings = Field(default_factory=GenerationSettings)


class InitConfig(StrictModel):
    """`selfpowered init`: build a fresh (untrained) LSM and save it as a checkpoint."""

    output: str
    seed: int = Field(0, description="seeds the fresh weights (connector, LoRA), so an init is reproducible")
    model: ModelConfig = Field(default_factory=ModelConfig)
