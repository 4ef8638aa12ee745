"""Task checks: does an answer do what the instruction asked, whatever its wording?

Each check is a cheap, explainable rule (not a judge model): a translation is in the target
language, keywords come as a short list, a continuation adds words the transcript does not have,
a sentiment answer names a label, a title is short, a question asks something. The echo check is
the speech anchor bias itself: the answer is the transcript again.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from selfpowered.text.echo import is_echo
from selfpowered.text.metrics import detect_language, normalize_english, parse_yes_no

LANGUAGE_NAMES = {
    "chinese": "zh",
    "mandarin": "zh",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "japanese": "ja",
    "korean": "ko",
    "russian": "ru",
    "arabic": "ar",
    "english": "en",
}
SENTIMENT_LABELS = ("positive", "negative", "neutral", "mixed")


def target_language(instruction: str) -> str | None:
    """The language an instruction asks the answer to be in ("... into Chinese" -> zh), if any.

    Instructions about English speech name English as the source ("Chinese continuation of the
    given English text"), so any other language named wins over English."""
    codes = [LANGUAGE_NAMES[w.lower()] for w in re.findall(r"[A-Za-z]+", instruction) if w.lower() in LANGUAGE_NAMES]
    others = [code for code in codes if code != "en"]
    return others[-1] if others else ("en" if codes else None)


def _content_words(text: str) -> set[str]:
    return {word for word in normalize_english(text).split() if len(word) > 2}


def adds_new_content(answer: str, transcript: str, minimum: int = 3) -> bool:
    """At least `minimum` content words (3+ letters) that the transcript does not contain."""
    return len(_content_words(answer) - _content_words(transcript)) >= minimum


def is_short_list(answer: str, max_items: int = 12, max_words_per_item: int = 5) -> bool:
    """Two to `max_items` items (comma, semicolon, newline or bullet separated), each a few words."""
    items = [item.strip(" -*•.\t") for item in re.split(r"[,;\n]|\d+\.\s", answer)]
    items = [item for item in items if item]
    return 2 <= len(items) <= max_items and all(len(item.split()) <= max_words_per_item for item in items)


def names_sentiment(answer: str) -> bool:
    return any(re.search(rf"\b{label}\b", answer.lower()) for label in SENTIMENT_LABELS)


def is_title(answer: str, transcript: str, max_words: int = 15) -> bool:
    return 0 < len(answer.split()) <= max_words and not is_echo(answer, transcript)


def asks_question(answer: str) -> bool:
    return "?" in answer


def in_language(answer: str, language: str) -> bool:
    return detect_language(answer) == language


Check = Callable[[str, str, str], bool]  # (answer, transcript, instruction) -> passed


def _continuation(answer: str, transcript: str, instruction: str) -> bool:
    language = target_language(instruction)
    if language and language != "en":
        return in_language(answer, language)
    return adds_new_content(answer, transcript) and not is_echo(answer, transcript)


def _translation(answer: str, transcript: str, instruction: str) -> bool:
    language = target_language(instruction)
    return language is not None and in_language(answer, language)


def _repetition(answer: str, transcript: str, instruction: str) -> bool:
    # a paraphrase keeps most of the content words
    words = _content_words(transcript)
    return bool(words) and len(words & _content_words(answer)) / len(words) >= 0.5


CHECKS: dict[str, tuple[str, Check]] = {
    "translation": ("answer in the target language", _translation),
    "continuation": ("new content (or the target language)", _continuation),
    "repetition": ("keeps >= half the content words", _repetition),
    "keywords": ("a short list", lambda a, t, i: is_short_list(a)),
    "intent": ("a non-echo answer of <= 60 words", lambda a, t, i: 0 < len(a.split()) <= 60 and not is_echo(a, t)),
    "sentiment": ("names a sentiment label", lambda a, t, i: names_sentiment(a)),
    "title": ("<= 15 words, not the transcript", lambda a, t, i: is_title(a, t)),
    "question": ("asks a question", lambda a, t, i: asks_question(a)),
    "summary": ("<= 12 words, not the transcript", lambda a, t, i: is_title(a, t, max_words=12)),
    "yesno": ("answers yes or no", lambda a, t, i: parse_yes_no(a) is not None),
}


# Checks that an answer cannot pass by accident while doing something else (transcribing a
# spoken command never names a sentiment label, forms a keyword list or switches to Chinese).
# The conflict probe pairs spoken commands only with these tasks; a title or a continuation
# check would also accept a misheard transcription of the command.
SPECIFIC_CHECKS = ("sentiment", "translation", "keywords")


def task_check(task: str, answer: str, transcript: str, instruction: str) -> bool | None:
    """The task's check on one answer; None for tasks without a check."""
    if task not in CHECKS:
        return None
    return CHECKS[task][1](answer, transcript, instruction)
