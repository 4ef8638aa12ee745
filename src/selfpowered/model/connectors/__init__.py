"""Connectors: Whisper's states -> LLM-space speech embeddings. One file per connector in this
package, each registering itself here with the model of its settings.

Every connector takes padded encoder states (batch, frames, d_enc) plus real lengths and returns
padded speech embeddings (batch, tokens, d_llm) plus token lengths. Padded frames never influence
real tokens, so a batch gives the same embeddings as its utterances one by one.

A config names one by `connector:` with its settings beside the name (`connector: {name:
utterance_qformer, queries: 8}`, or just the name for its defaults); `resolve_connector` validates
them with the connector's own `Options`. A new connector is one file here (a `Connector` subclass
under `@register_connector`: `Options`, `token_count`, `tokens_per_second`, `forward`) plus its
test; `config show init` lists it from the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import ValidationError
from torch import nn

from selfpowered.config import ModelConfig
from selfpowered.config.base import StrictModel
from selfpowered.config.sections import describe_sections, import_package_modules, register_under_name

if TYPE_CHECKING:
    from selfpowered.model.configuration import LSMConfig

DECODED_TOKENS_PER_SECOND = 4.0  # a typical English speaking rate in Whisper tokens (an estimate)


class Connector(nn.Module):
    """A registered connector. `token_count` is the one definition of how many speech tokens it
    makes from a clip's real frames: the connector, the processor's prompt layout and batch sizing
    all use it (through `speech_token_lengths`)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[StrictModel]]

    def __init__(self, config: LSMConfig, options: Any) -> None:
        super().__init__()
        self.config = config
        self.options = options

    @classmethod
    def token_count(cls, config: LSMConfig, options: Any, frames):
        """Speech tokens from `frames` real encoder frames (an int or a tensor of them)."""
        raise NotImplementedError

    @classmethod
    def tokens_per_second(cls, config: LSMConfig, options: Any) -> float:
        """Speech tokens per second of audio on average (batch sizing before encoding)."""
        raise NotImplementedError

    @classmethod
    def check(cls, model: ModelConfig, options: Any) -> None:
        """Reject settings that do not fit the rest of the model (a ValueError saying why)."""

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return self.token_count(self.config, self.options, frame_lengths)


CONNECTORS: dict[str, type[Connector]] = {}


def register_connector(cls: type[Connector]) -> type[Connector]:
    """Class decorator: register a connector under its `name` (twice is a programming error)."""
    register_under_name(CONNECTORS, cls, cls, "connectors")
    return cls


def load_connectors() -> dict[str, type[Connector]]:
    """Every connector of this package (each module registers its own on import), by name."""
    import_package_modules(__path__, __name__)
    return dict(sorted(CONNECTORS.items()))


def resolve_connector(model: ModelConfig) -> tuple[type[Connector], StrictModel]:
    """The connector a model config names and its validated settings; a ValueError names the
    unknown connector or the bad key (`connector.hidden_size: ...`)."""
    known = load_connectors()
    name = model.connector.name
    if name not in known:
        raise ValueError(f"connector: unknown connector {name!r}; choose one of {', '.join(known)}")
    cls = known[name]
    try:
        options = cls.Options.model_validate(model.connector.settings)
    except ValidationError as exc:
        problems = "; ".join(f"connector.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{problems} (connector {name})") from None
    cls.check(model, options)
    return cls, options


def describe_connectors() -> str:
    """Every registered connector with its settings, as `config show init` lists them."""
    return describe_sections(
        "connectors (`connector: {name: NAME, ...its settings}`, or the name alone for its defaults):",
        ((name, cls.summary, cls.Options) for name, cls in load_connectors().items()),
    )


def build_connector(config: LSMConfig) -> Connector:
    """The connector `config` names, with its settings."""
    return load_connectors()[config.connector_name](config, config.connector_options)


def speech_token_lengths(config: LSMConfig, encoder_frames):
    """Speech tokens the connector makes from `encoder_frames` real frames (an int or a tensor)."""
    return CONNECTORS[config.connector_name].token_count(config, config.connector_options, encoder_frames)


def connector_tokens_per_second(config: LSMConfig) -> float:
    """The connector's speech tokens per second of audio on average (batch sizing before encoding)."""
    return CONNECTORS[config.connector_name].tokens_per_second(config, config.connector_options)


def lengths_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]
