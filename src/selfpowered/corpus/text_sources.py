"""Sentence sources for synthetic speech, each a different *source* of English text, all offline.

A model trained on one text source and tested on held-out sentences of the same source has not
been tested on new data: the demo LSMs learned their grammar's sentences and wrote grammar
sentences for everything else. So corpora name their source, and the out-of-domain test set is
drawn from a source that no training split uses.

- `grammar`: the project's hand-written grammar (`sentences.py`).
- `wordnet`: the usage examples in WordNet 3.0's glosses (Debian `wordnet-base`, WordNet licence:
  free use with the copyright notice) - everyday sentences written by lexicographers.
- `fortunes`: Debian's `fortunes` package (BSD fortune-mod data files): quotations, sayings and
  jokes from many hands; the demo keeps it for the out-of-domain test.
- `llm`: sentences the LLM itself writes around seed words (see `llm_text.py`): a self-powered
  corpus text.

Every loader returns clean, speakable sentences (letters and light punctuation, no digits or
symbols a TTS engine and a transcript would render differently), deduplicated, in a fixed order.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from selfpowered.errors import SelfPoweredError

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Fortune files of ordinary prose; the rest are code, ASCII art, jargon or in-jokes.
FORTUNE_FILES = (
    "fortunes",
    "literature",
    "people",
    "wisdom",
    "love",
    "food",
    "pets",
    "sports",
    "kids",
    "education",
    "work",
    "platitudes",
    "humorists",
)
SPEAKABLE = re.compile(r"[A-Za-z][A-Za-z ,.;:!?'-]*[A-Za-z.!?]")
MIN_WORDS, MAX_WORDS = 5, 20


def speakable(text: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> str | None:
    """`text` tidied into one sentence a TTS voice reads as written, or None when it is not one:
    letters and light punctuation only (no digits, symbols, quotes or brackets), no shouted
    acronyms (read letter by letter), `min_words` to `max_words` words."""
    text = " ".join(text.replace("`", "'").split())
    if not SPEAKABLE.fullmatch(text) or re.search(r"[A-Z]{2,}", text) or "--" in text:
        return None
    if not min_words <= len(text.split()) <= max_words:
        return None
    return text[0].upper() + text[1:]


def _unique(sentences: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(s for s in sentences if s))


def _require(path: Path, package: str) -> None:
    if not path.exists():
        raise SelfPoweredError(f"{path} not found: install the Debian package {package} (make setup does, as root)")


def wordnet_examples(folder: Path = WORDNET_DIR) -> list[str]:
    """The quoted usage examples of every WordNet synset (nouns, verbs, adjectives, adverbs)."""
    _require(folder / "data.noun", "wordnet-base")
    found = []
    for part in ("noun", "verb", "adj", "adv"):
        for line in (folder / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "| " not in line:  # the licence header, or no gloss
                continue
            found += re.findall(r'"([^"]+)"', line.split("| ", 1)[1])
    return _unique(speakable(example) for example in found)


def _sentences_of(paragraph: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(paragraph.split()))


def fortune_sentences(folder: Path = FORTUNES_DIR, files: Iterable[str] = FORTUNE_FILES) -> list[str]:
    """Sentences of the chosen fortune files: entries split at `%` lines, attributions dropped."""
    _require(folder / "fortunes", "fortunes")
    found = []
    for name in files:
        path = folder / name
        if not path.is_file():
            continue
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            prose = "\n".join(line for line in entry.splitlines() if not line.strip().startswith("--"))
            found += _sentences_of(prose)
    return _unique(speakable(sentence) for sentence in found)


def grammar_sentences(count: int, seed: int = 0) -> list[str]:
    from selfpowered.corpus.sentences import generate_sentences

    return generate_sentences(count, seed)


def words_of(text: str) -> list[str]:
    """Normalised words (the Whisper normaliser WER uses), for vocabulary statistics."""
    from selfpowered.text.metrics import normalize_english

    return normalize_english(text).split()


def vocabulary_report(test: Iterable[str], train: Iterable[str]) -> dict:
    """How new a test set's words are to the training text: type and token OOV rates."""
    train_vocab = Counter(word for text in train for word in words_of(text))
    test_words = [word for text in test for word in words_of(text)]
    unseen = [word for word in test_words if word not in train_vocab]
    types = set(test_words)
    return {
        "train_types": len(train_vocab),
        "test_tokens": len(test_words),
        "test_types": len(types),
        "oov_token_rate": round(len(unseen) / max(len(test_words), 1), 4),
        "oov_type_rate": round(len(types - set(train_vocab)) / max(len(types), 1), 4),
        "most_common_oov": [word for word, _ in Counter(unseen).most_common(15)],
    }
