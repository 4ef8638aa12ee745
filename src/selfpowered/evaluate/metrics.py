"""Text metrics. WER follows the Whisper English normaliser so numbers compare with the literature."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass


@functools.lru_cache(maxsize=1)
def _english_normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_english(text: str) -> str:
    """Whisper's English normaliser: lower case, no punctuation, spelled-out numbers, US spelling."""
    return _english_normalizer()(text)


@dataclass(frozen=True)
class WordErrorRate:
    """Corpus-level WER with its error counts (after normalisation)."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> WordErrorRate:
    """Corpus WER (errors summed over all utterances / reference words), Whisper-normalised."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    prepare = normalize_english if normalize else str.strip
    refs = [prepare(text) for text in references]
    hyps = [prepare(text) for text in hypotheses]
    if not any(refs):
        raise ValueError("every reference is empty after normalisation")
    # jiwer refuses empty references; an empty reference contributes only insertions
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    extra_insertions = sum(len(h.split()) for r, h in zip(refs, hyps) if not r)
    out = jiwer.process_words([r for r, _ in pairs], [h if h else "" for _, h in pairs])
    words = sum(len(r.split()) for r, _ in pairs)
    errors = out.substitutions + out.deletions + out.insertions + extra_insertions
    return WordErrorRate(errors / words, out.substitutions, out.deletions, out.insertions + extra_insertions, words)
