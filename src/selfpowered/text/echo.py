"""The one rule for "this answer is the transcript again", with the one threshold it uses.

Augmentation drops LLM answers that copy the transcript (a copy would teach the LSM the very bias
we remove), and evaluation counts an LSM answer that repeats the speech as an echo of it (the
speech anchor bias itself). Both are the same judgement, so both call `is_echo` here.
"""

from __future__ import annotations

from selfpowered.text.metrics import normalize_english, word_error_rate

ECHO_MAX_WER = 0.3  # an answer within this normalised WER of the transcript repeats it


def is_echo(answer: str, transcript: str, max_wer: float = ECHO_MAX_WER) -> bool:
    """True when the answer is the transcript again (normalised WER <= `max_wer`).

    An answer that normalises to nothing (punctuation, empty) repeats nothing."""
    if not normalize_english(answer).strip():
        return False
    return word_error_rate([transcript], [answer]).wer <= max_wer
