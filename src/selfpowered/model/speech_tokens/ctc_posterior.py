"""`ctc_posterior`: each slot is the CTC head's posterior mixture of the LLM's own token embeddings,
the slots greedy CTC drops masked out (after LegoSLM; the head and its use: model/ctc.py)."""

from __future__ import annotations

from selfpowered.model.speech_tokens import SpeechTokenKind, register_speech_tokens


@register_speech_tokens
class CtcPosterior(SpeechTokenKind):
    name = "ctc_posterior"
    summary = (
        "the CTC head's posterior mixture of the LLM's own token embeddings per slot, blank and repeated "
        "slots masked out (model/ctc.py)"
    )
