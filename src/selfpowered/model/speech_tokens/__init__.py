"""Speech-token kinds: what the LLM reads in the speech slots of its prompt (`speech_tokens:`). One
file per kind in this package, each registering itself here; the code that does the work lives in
the model module the kind names (model/ctc.py, model/token_bridge.py, model/hearing_mixin.py).

A kind says what it needs from the rest of the model config (`check`, a ValueError saying why),
whether the LLM reads Whisper's transcript as its own tokens (`reads_transcript`: the prompt, the
hearing cache and the server's one Whisper pass per clip depend on it), and, when it is not the
connector's, how many speech tokens a second of audio makes (batch sizing). A new kind is one file
here plus its test, and its branch where the model builds its parts; `config show init` lists it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from selfpowered.config import ModelConfig
from selfpowered.config.base import StrictModel
from selfpowered.config.sections import describe_sections, import_package_modules, register_under_name

if TYPE_CHECKING:
    from selfpowered.model.configuration import LSMConfig


class SpeechTokenKind:
    """A registered kind of speech token (see the package's docstring)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    reads_transcript: ClassVar[bool] = False

    @classmethod
    def check(cls, model: ModelConfig) -> None:
        """Reject a model config this kind cannot work with (a ValueError saying why)."""

    @classmethod
    def tokens_per_second(cls, config: LSMConfig) -> float | None:
        """Speech tokens per second of audio on average; None: the connector's own rate."""
        return None


SPEECH_TOKENS: dict[str, type[SpeechTokenKind]] = {}


def register_speech_tokens(cls: type[SpeechTokenKind]) -> type[SpeechTokenKind]:
    """Class decorator: register a kind under its `name` (twice is a programming error)."""
    register_under_name(SPEECH_TOKENS, cls, cls, "speech-token kinds")
    return cls


def load_speech_tokens() -> dict[str, type[SpeechTokenKind]]:
    """Every kind of this package (each module registers its own on import), by name."""
    import_package_modules(__path__, __name__)
    return dict(sorted(SPEECH_TOKENS.items()))


def speech_token_kind(name: str) -> type[SpeechTokenKind]:
    """The registered kind called `name`; a ValueError lists the known ones."""
    known = load_speech_tokens()
    if name not in known:
        raise ValueError(f"speech_tokens: unknown kind {name!r}; choose one of {', '.join(known)}")
    return known[name]


def reads_transcript(config: LSMConfig | ModelConfig) -> bool:
    """Does this model's LLM read Whisper's transcript as its own tokens (the cascade's prompt)?"""
    return speech_token_kind(config.speech_tokens).reads_transcript


def resolve_speech_tokens(model: ModelConfig) -> type[SpeechTokenKind]:
    """The kind a model config names, checked against the rest of the config."""
    kind = speech_token_kind(model.speech_tokens)
    kind.check(model)
    return kind


def speech_tokens_per_second(config: LSMConfig) -> float:
    """Speech tokens per second of audio on average, the kind's own rate or else the connector's (for
    estimating batch sizes before encoding)."""
    from selfpowered.model.connectors import connector_tokens_per_second

    rate = speech_token_kind(config.speech_tokens).tokens_per_second(config)
    return rate if rate is not None else connector_tokens_per_second(config)


class _NoSettings(StrictModel):
    """A kind's needs are fields of the model config itself (its summary names them)."""


def describe_speech_tokens() -> str:
    """Every registered kind and what it needs, as `config show init` lists them."""
    return describe_sections(
        "speech-token kinds (`speech_tokens: NAME`):",
        ((name, cls.summary, _NoSettings) for name, cls in load_speech_tokens().items()),
    )
