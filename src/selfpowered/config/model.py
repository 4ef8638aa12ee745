"""Configs of the model itself: its architecture (one definition, shared with LSMConfig) and decoding."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

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


# the flat connector fields before 2026-12-07 -> (their name in the connector's settings, the connectors
# that had them); new connectors never add here
_QFORMERS = ("window_qformer", "utterance_qformer")
LEGACY_CONNECTOR_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "utterance_queries": ("queries", ("utterance_qformer",)),
    "window_seconds": ("window_seconds", ("window_qformer",)),
    "queries_per_window": ("queries_per_window", ("window_qformer",)),
    "qformer_layers": ("layers", _QFORMERS),
    "qformer_hidden_size": ("hidden_size", _QFORMERS),
    "qformer_heads": ("heads", _QFORMERS),
    "qformer_ffn_size": ("ffn_size", _QFORMERS),
    "stack_factor": ("stack_factor", ("stack_mlp",)),
    "tokens_per_stack": ("tokens_per_stack", ("stack_mlp",)),
    "mlp_hidden_size": ("hidden_size", ("stack_mlp",)),
    "connector_dropout": ("dropout", (*_QFORMERS, "stack_mlp")),
}


class ConnectorChoice(StrictModel):
    """A registered connector by `name`, its settings beside the name (validated by the connector's
    own model when a model is built: `model.connectors.resolve_connector`). A bare name is a choice
    with the connector's defaults."""

    model_config = ConfigDict(extra="allow")

    name: str = "window_qformer"

    @model_validator(mode="before")
    @classmethod
    def _a_name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(StrictModel):
    """How to build a fresh SpeechLM; defaults are the embedded CPU model. The one definition of
    these fields: `LSMConfig` (the checkpoint's config.json) validates its own through this model."""

    encoder: str = Field(DEFAULT_ENCODER, description="Whisper folder or embedded name")
    llm: str = Field(DEFAULT_LLM, description="causal LM folder or embedded name")
    connector: ConnectorChoice = Field(
        default_factory=ConnectorChoice,
        description="the connector (model/connectors/) and its settings beside its name, e.g. {name: "
        "utterance_qformer, queries: 8}, or the name alone for its defaults; `config show init` lists them",
    )
    speech_states: SpeechStates = "encoder"
    decoded_tokens_per_second: DecodedTokensPerSecond = 8.0
    speech_tokens: str = Field(
        "connector",
        description="what the LLM reads in its speech slots: a kind of model/speech_tokens/ (connector: the "
        "connector's outputs, the paper; transcript: its own tokens of what Whisper heard, then the connector's "
        "slots; ctc_posterior; whisper_text) - `config show init` lists them with what each needs",
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

    @model_validator(mode="before")
    @classmethod
    def _legacy_connector_fields(cls, data: Any) -> Any:
        """The flat layout of checkpoints and configs before 2026-12-07 (`qformer_hidden_size: 256`
        beside `connector: utterance_qformer`): the chosen connector's fields move into its
        settings; the other connectors' fields, which old checkpoints stored too, are dropped."""
        if not isinstance(data, dict) or not LEGACY_CONNECTOR_FIELDS.keys() & data.keys():
            return data
        data = dict(data)
        connector = data.get("connector", "window_qformer")
        choice = dict(connector) if isinstance(connector, dict) else {"name": connector}
        for old, (new, owners) in LEGACY_CONNECTOR_FIELDS.items():
            if old in data:
                value = data.pop(old)
                if choice.get("name") in owners:
                    choice[new] = value  # a flat `--set model.stack_factor=1` over a nested config wins
        data["connector"] = choice
        return data

    @model_validator(mode="after")
    def _decoder_states_fit(self) -> ModelConfig:
        if self.speech_states == "decoder":
            if self.connector.name != "stack_mlp":
                raise ValueError(
                    "speech_states: decoder gives one state per decoded token, not frames: it needs connector: "
                    f"stack_mlp (got {self.connector.name})"
                )
            if self.train_encoder:
                raise ValueError(
                    "speech_states: decoder decodes greedily, without gradients: train_encoder must be false"
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
