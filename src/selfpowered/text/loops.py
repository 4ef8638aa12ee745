"""A looping answer: one that says the same thing again and again until the token limit (the
cascade's "The spoken English is: The spoken English is: ..."). Neither an echo nor an answer
that follows the instruction, so it is counted on its own: the `loop rate` of eval and the page's
badge. The rule is the share of the answer's word n-grams that repeat an earlier one."""

from __future__ import annotations

import re

LOOP_NGRAM = 4
LOOP_SHARE = 0.3  # at least this share of the answer's 4-grams are repeats
LOOP_MIN_WORDS = 12  # shorter answers cannot loop by this rule


def repeated_share(answer: str, n: int = LOOP_NGRAM) -> float:
    """The share of the answer's word n-grams that already occurred earlier in it."""
    words = re.findall(r"\w+", answer.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def is_loop(answer: str) -> bool:
    """Does the answer go round in a loop (see the module)?"""
    return len(re.findall(r"\w+", answer)) >= LOOP_MIN_WORDS and repeated_share(answer) >= LOOP_SHARE
