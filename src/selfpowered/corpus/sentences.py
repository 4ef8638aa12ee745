"""Natural English sentences for the demo corpus, generated offline from a hand-written grammar.

Why a grammar: no text corpus is reachable without a network, public-domain books bring archaic
language and quoting copyrighted text is out. Every phrase (the word lists live in
`data/grammar.yaml`) was written for this project (licence: the project's MIT licence, or CC0 at
your option). Each frame joins whole phrases
(a full verb phrase, a full place phrase...), so every sentence is grammatical; the lexicon is
everyday vocabulary of ~750 words, which lets a small model meet most test words in training.

`generate_sentences(n, seed)` is deterministic: the same seed gives the same list.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from importlib import resources

import yaml

_LISTS = yaml.safe_load(resources.files("selfpowered.corpus").joinpath("data/grammar.yaml").read_text())
PEOPLE, NAMES, ACTIVITIES, PLACES = (_LISTS[k] for k in ("people", "names", "activities", "places"))
TIMES_PAST, TIMES_FUTURE, REASONS = (_LISTS[k] for k in ("times_past", "times_future", "reasons"))
COMMON_STATES, THINGS = _LISTS["common_states"], _LISTS["things"]  # things: (noun, adjectives, what is said)
CONDITIONS, REQUESTS, EVENTS, FOODS = (_LISTS[k] for k in ("conditions", "requests", "events", "foods"))
FOOD_CONDITIONS, WEATHER, CONSEQUENCES = (_LISTS[k] for k in ("food_conditions", "weather", "consequences"))
FEELINGS, NEWS = _LISTS["feelings"], _LISTS["news"]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _person(rng: random.Random) -> str:
    return rng.choice(NAMES) if rng.random() < 0.35 else rng.choice(PEOPLE)


def _thing_and_state(rng: random.Random) -> tuple[str, str]:
    noun, adjectives, states = rng.choice(THINGS)
    return f"{rng.choice(adjectives)} {noun}", rng.choice(states + COMMON_STATES)


def _with_place(rng: random.Random) -> tuple[str, str, str]:
    thing, state = _thing_and_state(rng)
    return thing, rng.choice(PLACES), state


def _mentioned(rng: random.Random) -> tuple[str, str, str, str, str]:
    thing, state = _thing_and_state(rng)
    verb = rng.choice(["saw", "mentioned", "talked about", "noticed", "described"])
    return thing, _person(rng), verb, rng.choice(TIMES_PAST), state


# Each frame draws one sentence; together they give questions, requests, statements and reports.
FRAMES: list[Callable[[random.Random], str]] = [
    lambda r: f"{_cap(_person(r))} {r.choice(ACTIVITIES)[1]} {r.choice(PLACES)} {r.choice(TIMES_PAST)}.",
    lambda r: f"{_cap(r.choice(TIMES_PAST))}, {_person(r)} {r.choice(ACTIVITIES)[1]} because {r.choice(REASONS)}.",
    lambda r: f"Do you think {_person(r)} will {r.choice(ACTIVITIES)[0]} {r.choice(TIMES_FUTURE)}?",
    lambda r: "The {} {} {}.".format(*_with_place(r)),
    lambda r: f"Please {r.choice(REQUESTS)} before {r.choice(EVENTS)}.",
    lambda r: f"{_cap(_person(r))} said that {r.choice(NEWS)}.",
    lambda r: f"{_cap(r.choice(FOODS))} always tastes better when {r.choice(FOOD_CONDITIONS)}.",
    lambda r: f"{_cap(r.choice(WEATHER))}, so {r.choice(CONSEQUENCES)}.",
    lambda r: f"{_cap(_person(r))} was {r.choice(FEELINGS)} when {_person(r)} {r.choice(ACTIVITIES)[1]}.",
    lambda r: f"We are going to {r.choice(ACTIVITIES)[0]} {r.choice(PLACES)} {r.choice(TIMES_FUTURE)}.",
    lambda r: f"Why did {_person(r)} {r.choice(ACTIVITIES)[0]} {r.choice(PLACES)} {r.choice(TIMES_PAST)}?",
    lambda r: f"I heard that {r.choice(NEWS)}, and {_person(r)} is {r.choice(FEELINGS)} about it.",
    lambda r: f"After {_person(r)} {r.choice(ACTIVITIES)[1]}, we {r.choice(ACTIVITIES)[1]} together.",
    lambda r: (
        f"If {r.choice(CONDITIONS)} {r.choice(TIMES_FUTURE)}, {_person(r)} will {r.choice(ACTIVITIES)[0]} instead."
    ),
    lambda r: f"Could you {r.choice(REQUESTS)} when {r.choice(EVENTS)}?",
    lambda r: "The {} that {} {} {} {}.".format(*_mentioned(r)),
]

MIN_WORDS, MAX_WORDS = 6, 25


def generate_sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences of 6-25 words, deterministic for a seed."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    attempts = 0
    while len(seen) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError(f"the grammar ran out of distinct sentences after {len(seen)} of {count}")
        sentence = rng.choice(FRAMES)(rng)
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            seen.setdefault(sentence)
    return list(seen)
