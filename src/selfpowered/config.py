"""Typed, validated configs: one pydantic model per stage, YAML in, YAML echoed out.

Every CLI flag is also a config key: a command loads its YAML (if given), lays the flags that were
set on top, then validates once. Unknown keys are errors (a typo must not silently fall back to a
default), and every error names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfpowered.errors import ConfigError


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(StrictModel):
    """How to build a fresh SpeechLM (design.md section 4); defaults are the embedded CPU model."""

    encoder: str = Field("whisper-tiny.en", description="Whisper folder or embedded name")
    llm: str = Field("smollm2-135m-instruct", description="causal LM folder or embedded name")
    connector: Literal["window_qformer", "stack_mlp"] = "window_qformer"
    window_seconds: float = Field(1 / 3, gt=0, description="Q-Former window length in real seconds")
    queries_per_window: int = Field(1, ge=1)
    qformer_layers: int = Field(2, ge=1)
    qformer_hidden_size: int = Field(768, ge=8)
    qformer_heads: int = Field(12, ge=1)
    qformer_ffn_size: int = Field(3072, ge=8)
    stack_factor: int = Field(4, ge=1, description="frames stacked per token (stack_mlp)")
    mlp_hidden_size: int = Field(1024, ge=8)
    connector_dropout: float = Field(0.1, ge=0, lt=1)
    finetune: Literal["lora", "full", "frozen"] = "lora"
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    train_encoder: bool = False
    prompt_format: Literal["chat_template", "vicuna_v1.1"] = "chat_template"
    system_prompt: str | None = None

    def lsm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `SpeechLM.build` (everything but the two model references)."""
        return self.model_dump(exclude={"encoder", "llm"})


class GenerationSettings(StrictModel):
    """Decoding settings (the paper decodes greedily with max_new_tokens 128)."""

    max_new_tokens: int = Field(128, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
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
    model: ModelConfig = Field(default_factory=ModelConfig)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value


def load_config(cls: type[ConfigT], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> ConfigT:
    """Read YAML (optional), apply dotted-key overrides whose value is not None, validate."""
    data: dict[str, Any] = {}
    source = str(path) if path else "command line"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded or {}
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc


def dump_config(config: BaseModel) -> str:
    """The validated config as YAML: what actually ran, for logs and checkpoints."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
