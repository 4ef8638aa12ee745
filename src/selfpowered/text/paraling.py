"""How a clip sounds, in words: the labels of the paralinguistic corpus as a plain-text line for
the LLM, and the judge-free rules that read an answer back into label values.

Augmentation gives the LLM the transcript *and* `describe(labels)` ("voice: female; pace: fast;
background: noisy (brown noise); room: reverberant, like a large hall; speakers: one"), asks it
an instruction about the speaker or the recording, and keeps the answer only when `check` finds
the true value in it and no other value of the same attribute; the `paraling` eval suite reads a
closed-option answer with `parse`. One vocabulary serves both, so what training keeps and what
evaluation counts as right cannot drift apart.
"""

from __future__ import annotations

import re

# attribute -> value -> the words that name it in an answer (lower case, whole words)
VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "gender": {
        "female": ("woman", "female", "girl", "lady", "she", "her", "women"),
        "male": ("man", "male", "boy", "gentleman", "he", "his", "him", "men"),
    },
    "pace": {
        "slow": ("slow", "slowly", "slower", "unhurried", "leisurely"),
        "fast": ("fast", "quick", "quickly", "rapid", "rapidly", "faster", "hurried"),
        "normal": ("normal pace", "moderate", "average pace", "steady"),
    },
    "background": {
        "clean": ("clean", "quiet", "clear", "no noise", "no background noise", "silent background", "noiseless"),
        "noisy": ("noisy", "noise", "hiss", "static", "loud background"),
    },
    "room": {
        "dry": ("dry", "no echo", "small room", "close", "studio", "no reverb", "without echo"),
        "reverberant": ("reverberant", "echo", "echoes", "echoing", "echoey", "reverb", "hall", "large room", "church"),
    },
    "speakers": {
        "one": ("one", "1", "single", "a single", "one person", "one speaker", "alone"),
        "two": ("two", "2", "two people", "two speakers", "a second", "both", "another person", "different"),
    },
}
# what `check` requires to be absent too: naming both values of an attribute is no answer
EVAL_VALUES = {attribute: tuple(v for v in values if v != "normal") for attribute, values in VALUES.items()}
DESCRIBE = {
    "gender": {"female": "a woman's voice", "male": "a man's voice", "mixed": "a woman's and a man's voice"},
    "pace": {"slow": "slow", "normal": "normal", "fast": "fast"},
    "background": {"clean": "quiet, no noise", "noisy": "noisy"},
    "room": {"dry": "dry, a small room without echo", "reverberant": "reverberant, echoing like a large hall"},
    "speakers": {"one": "one person speaks", "two": "two different people speak, one after the other"},
}
TEMPLATED = {  # the control arm's answers: the label, said plainly, never the LLM's own words
    "gender": {"female": "The speaker is a woman.", "male": "The speaker is a man."},
    "pace": {"slow": "The speaker talks slowly.", "normal": "The speaker talks at a normal pace.",
             "fast": "The speaker talks fast."},
    "background": {"clean": "The recording is clean, with no background noise.",
                   "noisy": "The recording is noisy, with background noise."},
    "room": {"dry": "It sounds dry, recorded in a small room without echo.",
             "reverberant": "It sounds reverberant, with echo like a large hall."},
    "speakers": {"one": "One person is speaking.", "two": "Two different people are speaking."},
}  # fmt: skip


def value_of(attribute: str, labels: dict) -> str | None:
    """The clip's value of `attribute` ("two" / "one" for speakers), None when it has none."""
    value = labels.get(attribute)
    return value if isinstance(value, str) and value in VALUES[attribute] else None


def describe(labels: dict) -> str:
    """The labels as one plain-text line for the LLM (what it is told about how the clip sounds)."""
    parts = []
    for attribute in ("gender", "pace", "background", "room", "speakers"):
        value = labels.get(attribute)
        if value is None or value not in DESCRIBE[attribute]:
            continue
        text = DESCRIBE[attribute][value]
        if attribute == "background" and value == "noisy" and labels.get("noise"):
            text = f"noisy ({labels['noise']} noise)"
        parts.append(f"{ {'gender': 'voice'}.get(attribute, attribute) }: {text}")
    if labels.get("telephone"):
        parts.append("line: a telephone")
    return "; ".join(parts)


NEGATIONS = ("not", "no", "isn't", "aren't", "without", "never", "nor", "hardly")


def whole_word(word: str) -> str:
    """A regex for `word` not inside a longer word (letters, digits, apostrophes); its possessive
    still names it ("a woman's voice" names a woman, as `describe` itself words the voice)."""
    return rf"(?<![\w']){re.escape(word)}(?:'s)?(?![\w'])"


def named(attribute: str, answer: str, values: tuple[str, ...] | None = None) -> list[str]:
    """The values of `attribute` an answer names, by their words: a phrase inside a longer one of
    another value does not count ("noise" in "no background noise" is the clean value's), nor does
    a word right after a negation ("not fast" names no pace)."""
    text = answer.lower()
    spans = []  # (start, end, value)
    for value in values or tuple(VALUES[attribute]):
        for word in VALUES[attribute][value]:
            for match in re.finditer(whole_word(word), text):
                before = re.findall(r"[\w']+", text[: match.start()])[-2:]
                if " " not in word and any(w in NEGATIONS for w in before):
                    continue
                spans.append((match.start(), match.end(), value))
    kept = {
        value
        for start, end, value in spans
        if not any(s <= start and end <= e and (e - s) > (end - start) and v != value for s, e, v in spans)
    }
    return [value for value in values or tuple(VALUES[attribute]) if value in kept]


def check(attribute: str, answer: str, labels: dict) -> bool:
    """Does the answer give the clip's true value of `attribute`, and no other value of it?"""
    truth = value_of(attribute, labels)
    if truth is None:
        return False
    said = named(attribute, answer, EVAL_VALUES[attribute] if truth != "normal" else None)
    return said == [truth]


def parse(attribute: str, answer: str, options: tuple[str, ...]) -> str | None:
    """A closed-option answer read back: the one option it names, else None (none, or several)."""
    said = named(attribute, answer, options)
    return said[0] if len(said) == 1 else None


def attributes_described(answer: str, labels: dict) -> dict[str, bool]:
    """For an open description: each attribute it names a value of -> whether that value is right
    (an attribute it names two values of counts as wrong; one it does not name is left out)."""
    out = {}
    for attribute in VALUES:
        truth = value_of(attribute, labels)
        if truth is None:
            continue
        said = named(attribute, answer, EVAL_VALUES[attribute] if truth != "normal" else None)
        if said:
            out[attribute] = said == [truth]
    return out


def templated_answer(attribute: str, labels: dict) -> str | None:
    """The control arm's answer to a question about `attribute`: the label, templated."""
    truth = value_of(attribute, labels)
    return TEMPLATED[attribute].get(truth) if truth else None


def sound_prompt(instruction: str, transcript: str, labels: dict) -> str:
    """The text-mode user turn that asks the LLM about how a clip sounds: what was said, how it
    sounds (`describe`), then the instruction."""
    return f'Here is a recording.\nWhat is said: "{transcript}"\nHow it sounds: {describe(labels)}\n\n{instruction}'
