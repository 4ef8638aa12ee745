"""Exception types shared by every stage.

One base class lets the CLI turn any expected failure (bad input, missing model, corrupt cache)
into a one-line message instead of a traceback, while real bugs still surface with a traceback.
"""

from __future__ import annotations


class SelfPoweredError(Exception):
    """An expected, user-facing failure: the message says what is wrong and how to fix it."""


class AudioError(SelfPoweredError):
    """An audio file is missing, unreadable, empty or holds invalid samples."""


class ModelNotFoundError(SelfPoweredError):
    """A model id resolves neither to a local folder nor to an embedded default."""


class CheckpointError(SelfPoweredError):
    """A checkpoint folder is incomplete or its weights do not fit the model its config describes."""


class AssetError(SelfPoweredError):
    """An embedded default model cannot be prepared (package missing, conversion failed)."""


class PromptFormatError(SelfPoweredError):
    """The LLM's tokenizer cannot render the prompt format that was asked for."""


class ConfigError(SelfPoweredError):
    """A config file or value is invalid; the message names the file and the field."""
