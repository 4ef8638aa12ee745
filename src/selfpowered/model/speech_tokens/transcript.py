"""`transcript`: the LLM reads its own tokens of the transcript Whisper heard (once per clip,
model/hearing.py) in the cascade's prompt, token for token, then the connector's slots over
Whisper's encoder states (model/hearing_mixin.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from selfpowered.config import ModelConfig
from selfpowered.model.connectors import DECODED_TOKENS_PER_SECOND
from selfpowered.model.speech_tokens import SpeechTokenKind, register_speech_tokens

if TYPE_CHECKING:
    from selfpowered.model.configuration import LSMConfig

LLM_TOKENS_PER_WHISPER_TOKEN = 1.3  # SmolLM2's pieces per Whisper token, on average


@register_speech_tokens
class Transcript(SpeechTokenKind):
    name = "transcript"
    summary = (
        "the LLM's own tokens of the transcript Whisper heard (once per clip) in the cascade's prompt, token for "
        "token, then the connector's slots over Whisper's encoder states (connector: utterance_qformer, or none)"
    )
    reads_transcript = True

    @classmethod
    def check(cls, model: ModelConfig) -> None:
        if model.connector.name not in ("utterance_qformer", "none"):
            raise ValueError(
                "speech_tokens: transcript reads Whisper's words as tokens; its connector adds a fixed number of "
                f"slots for the rest: connector: utterance_qformer, or none (got {model.connector.name})"
            )
        if model.speech_states != "encoder" or model.train_encoder:
            raise ValueError(
                "speech_tokens: transcript hears each clip once through CTranslate2 (its encoder states are its last "
                "layer, frozen): it needs speech_states: encoder and train_encoder: false"
            )

    @classmethod
    def tokens_per_second(cls, config: LSMConfig) -> float:
        """The heard words: ~1.3 LLM tokens per Whisper token at a typical speaking rate."""
        return DECODED_TOKENS_PER_SECOND * LLM_TOKENS_PER_WHISPER_TOKEN
