"""`connector`: the LLM reads the connector's outputs over Whisper's states (the paper's LSM)."""

from __future__ import annotations

from selfpowered.model.speech_tokens import SpeechTokenKind, register_speech_tokens


@register_speech_tokens
class ConnectorOutputs(SpeechTokenKind):
    name = "connector"
    summary = "the connector's outputs over Whisper's states, one slot each (the paper's LSM)"
