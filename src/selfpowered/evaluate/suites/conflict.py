"""The `conflict` suite: spoken commands ("translate this into French") under a different text
instruction: whom does the answer obey - the text, the voice, or neither (it echoes)?"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.errors import SelfPoweredError
from selfpowered.evaluate.checks import SPECIFIC_CHECKS, task_check
from selfpowered.evaluate.intervals import _round
from selfpowered.evaluate.probes import SPOKEN_COMMANDS, ProbeItem, conflict_items, synthesise_probes
from selfpowered.evaluate.suites import Building, Query, Scoring, Suite, SuiteSpec, register_suite
from selfpowered.text.echo import is_echo


def _durations(folder: Path, items) -> list[float]:
    import soundfile as sf

    return [sf.info(str(folder / item.audio)).duration for item in items]


def probe_suite(name: str, items: Sequence[ProbeItem], folder: Path, durations: Sequence[float]) -> Suite:
    queries = [
        Query(item.id, str(folder / item.audio), item.instruction, item.speech_text, duration)
        for item, duration in zip(items, durations)
    ]
    meta = [{"task": item.task, "command": item.command, "answer": item.answer} for item in items]
    return Suite(name, queries, meta)


def conflict_verdict(answer: str, spoken: str, command: str, task: str, instruction: str) -> str:
    """Whom the answer obeys: `speech` (did what the voice said), `echo` (repeated the voice),
    `text` (passed the text instruction's task check), or `neither`. Obeying the voice is
    checked first: an answer that does both did not let the text instruction win."""
    if SPOKEN_COMMANDS[command].obeyed(answer):
        return "speech"
    if is_echo(answer, spoken):
        return "echo"
    if task_check(task, answer, spoken, instruction):
        return "text"
    return "neither"


def score_conflict(suite: Suite, answers: Sequence[str]) -> dict:
    verdicts = [
        conflict_verdict(a, q.transcript, m["command"], m["task"], q.instruction)
        for a, q, m in zip(answers, suite.queries, suite.meta)
    ]
    shares = {v: _round(verdicts.count(v) / len(verdicts)) for v in ("text", "speech", "echo", "neither")}
    per_command: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for verdict, item in zip(verdicts, suite.meta):
        per_command[item["command"]][verdict] += 1
    return {
        "n": len(answers),
        "follows_text": shares["text"],
        "follows_speech": shares["speech"],
        "echo": shares["echo"],
        "neither": shares["neither"],
        "per_command": {k: dict(v) for k, v in sorted(per_command.items())},
        "verdicts": verdicts,
    }


class ConflictOptions(StrictModel):
    items: int = Field(48, ge=1, description="spoken probes, synthesised in `probe_voice`")


@register_suite
class Conflict(SuiteSpec):
    name = "conflict"
    summary = "spoken commands under another text instruction: share of answers that obey the text, the voice, neither"
    Options = ConflictOptions

    def build(self, building: Building, options: ConflictOptions) -> dict[str, Suite]:
        seen = building.seen
        pairs = [(t.name, template) for t in seen.tasks if t.name in SPECIFIC_CHECKS for template in t.templates]
        if not pairs:
            raise SelfPoweredError(
                f"the conflict suite needs a task with a specific check ({', '.join(SPECIFIC_CHECKS)}) in "
                f"task library {building.settings.tasks!r}; drop `conflict` from the suites or use another library"
            )
        folder = building.out / "probes" / "conflict"
        items = synthesise_probes(
            conflict_items(options.items, pairs, building.settings.seed), folder, building.settings.probe_voice
        )
        return {"conflict": probe_suite("conflict", items, folder, _durations(folder, items))}

    def score(self, suite: Suite, answers: Sequence[str], scoring: Scoring) -> dict:
        return score_conflict(suite, answers)
