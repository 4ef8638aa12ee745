"""`LSMConfig`: everything needed to rebuild a SpeechLM, saved as the checkpoint's `config.json`.

It names the encoder and LLM it was built on (a local folder, an embedded default such as
`whisper-tiny.en`, or `./encoder` / `./llm` for weights bundled inside the checkpoint) and also
keeps their full architecture configs, so a checkpoint describes itself even when the base
weights live elsewhere.

The architecture fields (connector, LoRA, prompt format...) are defined once, with their defaults
and limits, by `config.ModelConfig`; this class validates its own through it, so a YAML recipe and
a checkpoint can never disagree about what a field means or allows.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from selfpowered.config import ModelConfig
from selfpowered.config.model import LEGACY_CONNECTOR_FIELDS
from selfpowered.model.connectors import CONNECTORS, resolve_connector
from selfpowered.model.speech_tokens import resolve_speech_tokens

ARCHITECTURE_FIELDS = ModelConfig.architecture_fields()


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
        speech_placeholder: str = "<speech>",
        **kwargs: Any,
    ) -> None:
        given = {name: kwargs.pop(name) for name in (*ARCHITECTURE_FIELDS, *LEGACY_CONNECTOR_FIELDS) if name in kwargs}
        # pydantic's ValidationError is a ValueError: a bad value fails here, naming the field
        architecture = ModelConfig.model_validate(given)
        for name in ARCHITECTURE_FIELDS:
            setattr(self, name, getattr(architecture, name))
        # the connector as config.json keeps it: its name and every setting (defaults filled in)
        resolve_speech_tokens(architecture)  # the kind exists and the rest of the config fits it
        _, options = resolve_connector(architecture)
        self.connector = {"name": architecture.connector.name, **options.model_dump()}
        self.encoder_name_or_path = encoder_name_or_path
        self.llm_name_or_path = llm_name_or_path
        self.encoder_config = encoder_config or {}
        self.llm_config = llm_config or {}
        self.encoder_frame_rate = encoder_frame_rate
        self.speech_placeholder = speech_placeholder
        super().__init__(**kwargs)

    @property
    def encoder_hidden_size(self) -> int:
        return int(self.encoder_config["d_model"])

    @property
    def llm_hidden_size(self) -> int:
        return int(self.llm_config["hidden_size"])

    @property
    def connector_name(self) -> str:
        return self.connector["name"]

    @property
    def connector_options(self):
        """The connector's settings, validated by its own model (model/connectors/)."""
        settings = {key: value for key, value in self.connector.items() if key != "name"}
        return CONNECTORS[self.connector_name].Options.model_validate(settings)


# Lets AutoConfig / AutoTokenizer read a checkpoint folder's config.json without guessing.
AutoConfig.register(LSMConfig.model_type, LSMConfig, exist_ok=True)
