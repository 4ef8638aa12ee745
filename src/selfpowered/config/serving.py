"""The config of `selfpowered serve`."""

from __future__ import annotations

from pydantic import Field

from selfpowered.assets import DEFAULT_ENCODER
from selfpowered.config.base import StrictModel


class ServeConfig(StrictModel):
    """`selfpowered serve`: an OpenAI-compatible speech-text API over LSM checkpoints."""

    models: list[str] = Field(
        default_factory=list,
        description="LSM checkpoints as NAME=PATH (or PATH); default: the shipped demo checkpoints",
    )
    cascade: bool = Field(True, description="also serve `cascade`: Whisper -> the first model's base LLM")
    asr_model: str = Field(DEFAULT_ENCODER, description="Whisper of the cascade")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = Field(None, description="require Authorization: Bearer KEY on /v1/*")
    max_audio_seconds: float = Field(120.0, gt=0, description="longer audio is refused (400), never cut")
    max_batch: int = Field(16, ge=1, description="requests decoded together per model")
    max_queue: int = Field(256, ge=1, description="waiting requests before 429 (Retry-After)")
    max_tokens: int = Field(256, ge=1, description="default and upper bound of max_tokens (over it: 400)")
    max_prompt_tokens: int = Field(
        2048,
        ge=16,
        description="the most prompt tokens (text and speech) one request may have (400 beyond): bounds the time one "
        "prefill holds the decoding thread; the LLM's context bounds prompt + max_tokens too",
    )
    max_body_mb: float = Field(25.0, gt=0, description="request bodies over this are refused (413)")
    hearing_memory_mb: float = Field(
        32.0,
        gt=0,
        description="what Whisper heard in recent clips (~1 MB a clip), kept so a clip sent to several models at "
        "once is decoded once; part of the server's steady RSS",
    )
    merge_lora: bool = Field(True, description="fold each LoRA adapter into its LLM's weights at load")
    device: str = "cpu"
