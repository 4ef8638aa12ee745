"""Verifiable instructions (Google's IFEval) over speech: the items, and the maintained checkers.

An item is a task about the speech ("Summarise what was said") plus one or two constraints whose
following a rule can verify - a word limit, all lowercase, bullet points, JSON, an end phrase, no
commas, words from the speech... - each in several wordings (none of them used in training).
Scoring uses lm-eval's implementation of IFEval's checkers (`lm_eval.tasks.ifeval`), not ours, with
its strict and loose modes. Two things are supplied around it, both offline: its sentence counter
needs NLTK's punkt model, which nothing here may download, so `nupunkt` (a registry package with
its own Punkt model) counts sentences instead; and langdetect is seeded, so a rerun scores the same.
"""

from __future__ import annotations

import contextlib
import functools
import io
import random
import re
from dataclasses import dataclass, field
from typing import Any

TASKS = (
    "Summarise what was said",
    "Tell me what the speaker is talking about",
    "Write a short reply to what was said",
    "Describe the message of this speech",
    "Explain what you just heard",
)

# constraint id -> (wordings; each is formatted with the constraint's kwargs)
WORDINGS: dict[str, tuple[str, ...]] = {
    "length_constraints:number_words": (
        "Answer in fewer than {num_words} words.",
        "Keep your answer under {num_words} words.",
        "Use less than {num_words} words in total.",
    ),
    "change_case:english_lowercase": (
        "Write your whole answer in lowercase letters only.",
        "Do not use a single capital letter.",
        "Your entire answer must be in English and all in lowercase.",
    ),
    "change_case:english_capital": (
        "Write your whole answer in capital letters.",
        "Answer entirely in uppercase English letters.",
    ),
    "punctuation:no_comma": (
        "Do not use any commas.",
        "Avoid commas anywhere in your answer.",
        "Your reply must not contain a comma.",
    ),
    "detectable_format:number_bullet_lists": (
        "Answer with exactly {num_bullets} bullet points, each line starting with '* '.",
        "Give {num_bullets} markdown bullet points (* like this) and nothing else.",
    ),
    "detectable_format:json_format": (
        "Give your whole answer as JSON.",
        'Wrap the entire answer in JSON format, for example {{"answer": "..."}}.',
    ),
    "startend:end_checker": (
        'End your answer with the exact phrase "{end_phrase}"',
        'Finish with these words and nothing after them: "{end_phrase}"',
    ),
    "startend:quotation": (
        "Put your whole answer inside double quotation marks.",
        'Wrap the entire reply in double quotes, like "this".',
    ),
    "detectable_format:title": (
        "Give your answer a title wrapped in double angular brackets, such as <<a title>>.",
        "Start with a title in double angle brackets, like <<title>>.",
    ),
    "keywords:existence": (
        "Include the words {keyword_list} in your answer.",
        "Your answer must mention {keyword_list}.",
    ),
    "detectable_content:postscript": (
        "At the end, add a postscript starting with {postscript_marker}",
        "Close with a note that begins with {postscript_marker}",
    ),
}
# pairs that cannot both hold (or make each other trivial)
CONFLICTS = {
    frozenset({"change_case:english_lowercase", "change_case:english_capital"}),
    frozenset({"detectable_format:json_format", "detectable_format:number_bullet_lists"}),
    frozenset({"detectable_format:json_format", "startend:quotation"}),
    frozenset({"detectable_format:json_format", "detectable_format:title"}),
    frozenset({"detectable_format:json_format", "startend:end_checker"}),
    frozenset({"detectable_format:json_format", "detectable_content:postscript"}),
    frozenset({"startend:quotation", "startend:end_checker"}),
    frozenset({"startend:quotation", "detectable_content:postscript"}),
    frozenset({"startend:end_checker", "detectable_content:postscript"}),
    frozenset({"change_case:english_lowercase", "detectable_content:postscript"}),
    frozenset({"change_case:english_lowercase", "startend:end_checker"}),
    frozenset({"change_case:english_capital", "keywords:existence"}),
}
END_PHRASES = ("Is there anything else I can help with?", "That is all.", "Thank you for listening.")


@dataclass(frozen=True)
class IFItem:
    """One spoken question: the instruction text and, per constraint, its id and checker kwargs."""

    instruction: str
    constraint_ids: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def _keywords(transcript: str, rng: random.Random) -> list[str]:
    words = [w for w in re.findall(r"[A-Za-z]+", transcript.lower()) if len(w) >= 4]
    unique = list(dict.fromkeys(words))
    return rng.sample(unique, min(2, len(unique))) if unique else ["speech"]


def _kwargs(constraint: str, transcript: str, rng: random.Random) -> dict[str, Any]:
    if constraint == "length_constraints:number_words":
        return {"relation": "less than", "num_words": rng.choice((8, 12, 20))}
    if constraint == "detectable_format:number_bullet_lists":
        return {"num_bullets": rng.choice((2, 3))}
    if constraint == "startend:end_checker":
        return {"end_phrase": rng.choice(END_PHRASES)}
    if constraint == "keywords:existence":
        return {"keywords": _keywords(transcript, rng)}
    if constraint == "detectable_content:postscript":
        return {"postscript_marker": "P.S."}
    return {}


def make_item(transcript: str, rng: random.Random, two_constraints: bool) -> IFItem:
    """A task about the speech with one (or two compatible) constraints, each in a drawn wording."""
    ids = list(WORDINGS)
    chosen = [rng.choice(ids)]
    if two_constraints:
        compatible = [c for c in ids if c != chosen[0] and frozenset({c, chosen[0]}) not in CONFLICTS]
        chosen.append(rng.choice(compatible))
    kwargs = [_kwargs(c, transcript, rng) for c in chosen]
    phrases = []
    for constraint, arguments in zip(chosen, kwargs):
        values = {**arguments, "keyword_list": " and ".join(f'"{k}"' for k in arguments.get("keywords", []))}
        phrases.append(rng.choice(WORDINGS[constraint]).format(**values))
    instruction = f"{rng.choice(TASKS)}. " + " ".join(phrases)
    return IFItem(instruction, tuple(chosen), tuple(kwargs))


@functools.lru_cache(maxsize=1)
def _checkers():
    """lm-eval's IFEval utilities, imported once, quietly and offline (see the module docstring)."""
    import langdetect
    import nupunkt

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from lm_eval.tasks.ifeval import instructions_util, utils  # tries (and fails) to fetch punkt_tab
    instructions_util.count_sentences = lambda text: len(nupunkt.sent_tokenize(text))
    langdetect.DetectorFactory.seed = 0
    return utils


def check(item: IFItem, response: str) -> tuple[list[bool], list[bool]]:
    """(strict, loose) following of each of the item's constraints, by IFEval's own checkers."""
    utils = _checkers()
    example = utils.InputExample(
        key=0, instruction_id_list=list(item.constraint_ids), prompt=item.instruction, kwargs=list(item.kwargs)
    )
    strict = utils.test_instruction_following_strict(example, response)
    loose = utils.test_instruction_following_loose(example, response)
    return list(strict.follow_instruction_list), list(loose.follow_instruction_list)


def failed_constraints(instruction: str, constraints: list[tuple[str, dict]], response: str) -> list[str]:
    """The ids of `constraints` that `response` does not follow (strict), for filtering training
    answers the way the `ifeval` suite scores them; an unknown id is a clear error."""
    registry = _checkers().instructions_registry.INSTRUCTION_DICT
    unknown = [c for c, _ in constraints if c not in registry]
    if unknown:
        raise ValueError(f"unknown IFEval instruction id(s) {unknown}; known: {', '.join(sorted(registry))}")
    item = IFItem(instruction, tuple(c for c, _ in constraints), tuple(k for _, k in constraints))
    strict, _ = check(item, response)
    return [c for (c, _), ok in zip(constraints, strict) if not ok]
