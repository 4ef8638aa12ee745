"""Post-filters for LLM answers, each a named reason (counted in stats, listed in rejects).

The official code keeps an answer only if it ends in punctuation; we also drop empty answers,
refusals / assistant boilerplate, answers cut by the token limit, and answers that merely copy the
transcript when the task asked for something else (a copy would teach the LSM the very speech
anchor bias we are removing). A task with verifiable constraints (`verify:` in its library) keeps
only answers that IFEval's own checkers pass: rejection sampling from the same LLM, so the LSM
learns formats the LLM can produce, and nothing it cannot.
"""

from __future__ import annotations

import re

from selfpowered.config import FilterConfig
from selfpowered.text.echo import is_echo

FINAL_PUNCTUATION = tuple(".!?。！？\"')]*»”’")
REFUSAL_PATTERNS = [
    r"\bas an ai\b",
    r"\bas a (?:language model|chatbot|digital assistant|text-based)\b",
    r"\bi(?:'m| am) (?:sorry|not able|unable)\b",
    r"\bi can(?:no|')t (?:help|assist|provide|do that)\b",
    r"\bi don't have the (?:capability|ability)\b",
    r"\bsmollm\b",
]
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)
# the reason given to an answer that passes every other filter but not its IFEval checker; the
# only one `verify_attempts` resamples (the other filters say the LLM misread the task itself)
CONSTRAINT_FAILED = "fails its verifiable constraint"
# an answer about how the clip sounds that does not name the clip's true label (text/paraling.py)
LABEL_FAILED = "fails its label check"
RESAMPLED = (CONSTRAINT_FAILED, LABEL_FAILED)  # the reasons `verify_attempts` asks again for


def trim_to_sentences(answer: str) -> str:
    """An answer cut mid-sentence, up to the end of its last complete sentence ("" if none)."""
    ends = [match.end() for match in re.finditer(r"[.!?](?=\s|$)", answer)]
    return answer[: ends[-1]].strip() if ends else ""


def reject_reason(
    answer: str,
    transcript: str,
    finish_reason: str,
    copy_allowed: bool,
    settings: FilterConfig,
    final_punctuation: bool = True,
    instruction: str = "",
    constraints: list[tuple[str, dict]] | None = None,
    attribute: str | None = None,
    labels: dict | None = None,
) -> str | None:
    """None when the answer is kept, else the filter that dropped it. A task about how the clip
    sounds (`attribute`) keeps an answer only if it names the clip's true value (`labels`) and no
    other; a description, only if it names two attributes right and none wrong."""
    text = answer.strip()
    if not text:
        return "empty"
    if finish_reason == "length":
        return "truncated: hit max_new_tokens"
    if settings.require_final_punctuation and final_punctuation and not text.endswith(FINAL_PUNCTUATION):
        return "truncated: no final punctuation"
    if settings.drop_refusals and _REFUSAL.search(text):
        return "refusal or boilerplate"
    if not copy_allowed and is_echo(text, transcript, settings.copy_max_wer):
        return "copies the transcript"
    if constraints:
        from selfpowered.text.ifeval import failed_constraints

        failed = failed_constraints(instruction, constraints, text)
        if failed:
            return f"{CONSTRAINT_FAILED}: {', '.join(failed)}"
    if attribute is not None:
        from selfpowered.text.paraling import attributes_described, check

        found = attributes_described(text, labels or {})  # whatever else it says about the clip is right too
        wrong = [name for name, right in found.items() if not right]
        if wrong:
            return f"{LABEL_FAILED}: names a wrong {', '.join(wrong)}"
        if attribute == "describe" and sum(found.values()) < 2:
            return f"{LABEL_FAILED}: describe names {list(found) or 'no attribute'}"
        if attribute != "describe" and not check(attribute, text, labels or {}):
            return f"{LABEL_FAILED}: {attribute} is {(labels or {}).get(attribute)}"
    return None
