"""`whisper_text`: the LLM reads its own embeddings of the text Whisper's decoder wrote, with the
connector's output added through a gate that starts at 0 (model/token_bridge.py)."""

from __future__ import annotations

from selfpowered.config import ModelConfig
from selfpowered.model.speech_tokens import SpeechTokenKind, register_speech_tokens


@register_speech_tokens
class WhisperText(SpeechTokenKind):
    name = "whisper_text"
    summary = (
        "the LLM's own embeddings of the text Whisper's decoder wrote, plus the connector's output through a "
        "gate that starts at 0 (model/token_bridge.py; needs speech_states: decoder, connector stack_mlp with "
        "stack_factor 1 and tokens_per_stack: the LLM pieces a Whisper token may take on average, 2)"
    )

    @classmethod
    def check(cls, model: ModelConfig) -> None:
        if model.speech_states != "decoder":
            raise ValueError(
                "speech_tokens: whisper_text reads Whisper's decoded text: it needs speech_states: decoder"
            )
