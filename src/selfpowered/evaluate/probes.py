"""Spoken probe sets for the `conflict` and `sqa` suites, made with the corpus TTS engines.

- conflict: the speech itself is a command ("please count from one to five") and the text
  instruction asks for something else ("is this sentence positive, negative or neutral?"). An LSM
  with speech anchor bias obeys the voice; one that listens to the text obeys the instruction.
  Every spoken command has a rule that recognises an answer obeying it.
- sqa: a text context with two facts, and a spoken yes/no question about one of them (balanced
  yes/no), as in the paper's spoken BoolQ, scored by accuracy.

Items are drawn from a seeded grammar (same seed -> same items) and synthesised once into a cache
folder (files that exist are reused), with the voice held out of the demo corpus's training set.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from selfpowered.atomic import atomic_write_text
from selfpowered.corpus.jobs import Job, synthesise_job
from selfpowered.corpus.tts import Voice, voice_available
from selfpowered.errors import SelfPoweredError
from selfpowered.text.metrics import detect_language


@dataclass(frozen=True)
class SpokenCommand:
    text: str
    obeyed: Callable[[str], bool]  # does an answer do what the voice asked?


def _mentions(words: tuple[str, ...], at_least: int) -> Callable[[str], bool]:
    return lambda answer: sum(bool(re.search(rf"\b{w}s?\b", answer.lower())) for w in words) >= at_least


SPOKEN_COMMANDS: dict[str, SpokenCommand] = {
    "count": SpokenCommand(
        "Please count from one to five.",
        lambda a: bool(re.search(r"\b(1|one)\b\W+(2|two)\b\W+(3|three)\b", a.lower())),
    ),
    "animals": SpokenCommand(
        "Name three animals that live on a farm.",
        _mentions(("cow", "pig", "horse", "sheep", "chicken", "goat", "duck", "hen", "rooster", "donkey"), 2),
    ),
    "colours": SpokenCommand(
        "List three colours of the rainbow.",
        _mentions(("red", "orange", "yellow", "green", "blue", "indigo", "violet", "purple"), 2),
    ),
    "capital": SpokenCommand("Tell me the capital city of France.", lambda a: "paris" in a.lower()),
    "arithmetic": SpokenCommand("What is two plus two?", lambda a: bool(re.search(r"\b(4|four)\b", a.lower()))),
    "weekend": SpokenCommand(
        "Which two days make up the weekend?", lambda a: "saturday" in a.lower() and "sunday" in a.lower()
    ),
    "french": SpokenCommand(
        "Please translate this sentence into French: the weather is very nice today.",
        lambda a: detect_language(a) == "fr",
    ),
    "spell": SpokenCommand(
        "Spell the word cat, letter by letter.", lambda a: bool(re.search(r"\bc\W+a\W+t\b", a.lower()))
    ),
}


@dataclass(frozen=True)
class ProbeItem:
    """One spoken probe: what the audio says, the text instruction, and what is expected."""

    id: str
    speech_text: str
    instruction: str
    task: str  # the text instruction's task (conflict) or "sqa"
    command: str = ""  # conflict: key of the spoken command
    answer: bool | None = None  # sqa: the gold yes/no
    audio: str = ""  # relative to the probe folder, once synthesised


def conflict_items(n: int, text_instructions: list[tuple[str, str]], seed: int = 0) -> list[ProbeItem]:
    """`n` pairs of (spoken command, different text instruction), both cycled so each command
    meets several tasks. `text_instructions` = (task, instruction) pairs from the task library."""
    if not text_instructions:
        raise SelfPoweredError("the conflict suite needs at least one non-ASR text instruction")
    rng = random.Random(seed)
    commands = list(SPOKEN_COMMANDS)
    order = rng.sample(text_instructions, len(text_instructions))
    items = []
    for i in range(n):
        key = commands[i % len(commands)]
        task, instruction = order[(i // len(commands) + i) % len(order)]
        items.append(ProbeItem(f"conflict-{i:04d}-{key}", SPOKEN_COMMANDS[key].text, instruction, task, command=key))
    return items


_NAMES = ("Anna", "Tom", "Maria", "David", "Lena", "Omar", "Sara", "Peter", "Emma", "Hugo")
_COLOURS = ("red", "blue", "green", "yellow", "black", "white")
_THINGS = ("bicycle", "umbrella", "kite", "guitar", "suitcase", "lamp", "basket", "scarf")
_PLACES = ("garage", "kitchen", "garden", "attic", "hallway", "cellar")
SQA_INSTRUCTION = "Read this text, then answer the spoken question with yes or no. Text: {context}"


def sqa_items(n: int, seed: int = 0) -> list[ProbeItem]:
    """`n` spoken yes/no questions over two-fact contexts; exactly half the answers are yes."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        first, second = rng.sample(_NAMES, 2)
        facts = [
            (name, rng.choice(_COLOURS), thing, place)
            for name, thing, place in zip((first, second), rng.sample(_THINGS, 2), rng.sample(_PLACES, 2))
        ]
        context = " ".join(f"{name} keeps a {colour} {thing} in the {place}." for name, colour, thing, place in facts)
        name, colour, thing, place = facts[rng.randrange(2)]
        gold = i % 2 == 0
        if not gold:  # change one attribute so the fact is false
            if rng.random() < 0.5:
                colour = rng.choice([c for c in _COLOURS if c != colour])
            else:
                place = rng.choice([p for p in _PLACES if p not in (facts[0][3], facts[1][3])])
        question = f"Does {name} keep a {colour} {thing} in the {place}?"
        items.append(ProbeItem(f"sqa-{i:04d}", question, SQA_INSTRUCTION.format(context=context), "sqa", answer=gold))
    return items


def synthesise_probes(items: list[ProbeItem], folder: str | Path, voice: str, progress: bool = True) -> list[ProbeItem]:
    """Speak every item's `speech_text` into `folder` (existing files reused) and write
    `folder/probes.jsonl`; returns the items with their audio paths."""
    folder = Path(folder)
    spoken = Voice.parse(voice)
    if not voice_available(spoken):
        raise SelfPoweredError(
            f"TTS voice {voice} is not installed (needed for spoken probes); `make setup` installs the Debian "
            "engines as root, or choose another with `probe_voice` (e.g. piper:joe)"
        )
    done = []
    for item in tqdm(items, desc=f"probes -> {folder.name}", unit=" utt", disable=not progress):
        relative = f"audio/{item.id}.flac"
        if not (folder / relative).is_file():
            job = Job(item.id, "probe", item.speech_text, spoken, 1.0, relative)
            _, _, error = synthesise_job((job, str(folder)))
            if error:
                raise SelfPoweredError(f"{voice} failed on probe {item.id} ({item.speech_text!r}): {error}")
        done.append(ProbeItem(**{**asdict(item), "audio": relative}))
    lines = "".join(json.dumps(asdict(item), ensure_ascii=False) + "\n" for item in done)
    atomic_write_text(folder / "probes.jsonl", lines)
    return done
