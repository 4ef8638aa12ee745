"""Text metrics. WER follows the Whisper English normaliser so numbers compare with the literature."""

from __future__ import annotations

import functools
import re
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

    @property
    def miss_rate(self) -> float:
        """(S + D) / N: the share of reference words not recovered. Unlike WER it ignores insertions, so
        a model that says the right words inside chatter ("The speech says: ...") is told apart from one
        that says other words."""
        return (self.substitutions + self.deletions) / self.reference_words


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


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> float:
    """Corpus CER after the same normaliser as WER (spaces count as characters, as in jiwer)."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    prepare = normalize_english if normalize else str.strip
    pairs = [(prepare(r), prepare(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("every reference is empty after normalisation")
    out = jiwer.process_characters([r for r, _ in pairs], [h for _, h in pairs])
    characters = sum(len(r) for r, _ in pairs)
    return (out.substitutions + out.deletions + out.insertions) / characters


def bleu_tokenizer(language: str) -> str:
    """sacreBLEU's tokenizer for a target language: `zh` for Chinese, `13a` otherwise (as stated
    in every report, since BLEU is not comparable across tokenizers)."""
    return "zh" if language.lower().startswith("zh") else "13a"


def corpus_bleu(references: Sequence[str], hypotheses: Sequence[str], language: str = "en") -> float:
    """Corpus BLEU (0-100) with one reference per hypothesis and the language's tokenizer."""
    import sacrebleu

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=bleu_tokenizer(language)).score)


def corpus_chrf(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus chrF (0-100, character 6-grams, beta 2): robust for short answers and any script."""
    import sacrebleu

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


_YES = {"yes", "true", "correct", "yeah", "yep", "affirmative", "right"}
_NO = {"no", "false", "incorrect", "nope", "wrong", "not"}
_NEGATORS = {"not", "isn't", "isnt", "never", "wasn't", "doesn't", "don't"}


def parse_yes_no(answer: str) -> bool | None:
    """The yes/no verdict in a free-form answer, or None when it gives none.

    The first verdict word decides ("No, that is true" -> no), and a yes-word right after a
    negation flips ("it is not true" -> no). "not" alone counts as a no only without a later
    verdict word, so "not only ... yes" stays yes."""
    words = re.findall(r"[a-z']+", answer.lower())
    for index, word in enumerate(words):
        if word in _YES:
            negated = any(w in _NEGATORS for w in words[max(0, index - 2) : index])
            return not negated
        if word in _NO and word != "not":
            return False
    return False if "not" in words else None


def parse_choice(answer: str, options: Sequence[str]) -> int | None:
    """Index of the chosen option in a free-form answer to a lettered multiple-choice question.

    Accepts "B", "(B)", "B)", "B.", "answer: B", "option B", "the answer is B", or the text of
    exactly one option; None when the answer names no option or several."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    text = answer.strip()
    patterns = [
        rf"^\(?([{''.join(letters)}])\)?(?:[.):,]|$)",  # a lone letter, not the article in "A dog"
        rf"\b(?:answer|option|choice)(?: is)?[:\s]+\(?([{''.join(letters)}])\b",
        rf"\(([{''.join(letters)}])\)",
    ]
    for pattern in patterns:
        match = re.search(pattern, text, flags=re.IGNORECASE if pattern != patterns[0] else 0)
        if match:
            return letters.index(match.group(1).upper())
    lowered = text.lower()
    named = [i for i, option in enumerate(options) if option.strip() and option.lower() in lowered]
    return named[0] if len(named) == 1 else None


def accuracy(predictions: Sequence[object | None], gold: Sequence[object]) -> float:
    """Share of predictions equal to gold; an unparsed prediction (None) counts as wrong."""
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} predictions but {len(gold)} gold labels")
    if not gold:
        raise ValueError("accuracy of nothing")
    return sum(p is not None and p == g for p, g in zip(predictions, gold)) / len(gold)


_SCRIPTS = [
    ("ja", r"[\u3040-\u30ff]"),  # kana decides Japanese before Han
    ("zh", r"[\u4e00-\u9fff\u3400-\u4dbf]"),
    ("ko", r"[\uac00-\ud7af]"),
    ("ru", r"[\u0400-\u04ff]"),
    ("ar", r"[\u0600-\u06ff]"),
    ("hi", r"[\u0900-\u097f]"),
    ("el", r"[\u0370-\u03ff]"),
    ("th", r"[\u0e00-\u0e7f]"),
]
_STOPWORDS = {
    "en": {"the", "and", "is", "of", "to", "a", "in", "that", "it", "was", "for", "on", "with", "he", "she"},
    "fr": {"le", "la", "les", "et", "est", "de", "des", "un", "une", "du", "que", "en", "dans", "il", "elle"},
    "de": {"der", "die", "das", "und", "ist", "nicht", "ein", "eine", "zu", "den", "mit", "sich", "auf", "es"},
    "es": {"el", "la", "los", "las", "y", "es", "de", "que", "en", "un", "una", "por", "con", "del", "se"},
    "it": {"il", "la", "e", "di", "che", "un", "una", "per", "non", "sono", "del", "della", "gli", "lo"},
    "pt": {"o", "a", "os", "as", "e", "de", "que", "um", "uma", "do", "da", "em", "não", "com", "para"},
    "nl": {"de", "het", "een", "en", "van", "is", "niet", "dat", "op", "te", "zijn", "met", "voor", "ik"},
}


def detect_language(text: str) -> str:
    """Language of an answer: by script for non-Latin languages (a Han share of the letters gives
    `zh`), by stop-word profile for Latin-script ones; `und` when there is nothing to go on.

    Coarse on purpose: it answers "did the model switch to the target language?", not dialect."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "und"
    for code, pattern in _SCRIPTS:
        if len(re.findall(pattern, text)) / len(letters) >= 0.3:
            return code
    words = re.findall(r"[^\W\d_]+", text.lower())
    scores = {code: sum(word in stop for word in words) for code, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda code: scores[code])
    return best if scores[best] > 0 else "und"


def recovered_words(reference: str, hypothesis: str) -> list[tuple[str, bool]]:
    """Each Whisper-normalised reference word and whether the alignment with the hypothesis
    matches it (a substitution or a deletion does not)."""
    import jiwer

    ref, hyp = normalize_english(reference), normalize_english(hypothesis)
    words = ref.split()
    if not words:
        return []
    hit = [False] * len(words)
    for chunk in jiwer.process_words(ref, hyp or "<empty>").alignments[0]:
        if chunk.type == "equal":
            for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
                hit[i] = True
    return list(zip(words, hit))


def recall_by_vocabulary(references: Sequence[str], hypotheses: Sequence[str], vocabulary: set[str]) -> dict:
    """Recall of the reference words in `vocabulary` (normalised words of the training transcripts)
    and of those outside it: a speech path that learnt only the words it was trained on recovers
    the seen ones and misses the unseen; one that generalises (Whisper) misses both alike."""
    counts = {"seen": [0, 0], "unseen": [0, 0]}  # [recovered, words]
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        for word, hit in recovered_words(reference, hypothesis):
            bucket = counts["seen" if word in vocabulary else "unseen"]
            bucket[0] += hit
            bucket[1] += 1
    return {
        name: {"words": total, "recall": round(found / total, 4) if total else None}
        for name, (found, total) in counts.items()
    }
