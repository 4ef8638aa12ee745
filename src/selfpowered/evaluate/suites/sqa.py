"""The `sqa` suite: spoken yes/no questions about common knowledge; does the LSM answer what the
voice asks when the text instruction says to?"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.evaluate.intervals import _round
from selfpowered.evaluate.probes import sqa_items, synthesise_probes
from selfpowered.evaluate.suites import Building, Scoring, Suite, SuiteSpec, register_suite
from selfpowered.evaluate.suites.conflict import _durations, probe_suite
from selfpowered.text.metrics import accuracy, parse_yes_no


def score_sqa(suite: Suite, answers: Sequence[str]) -> dict:
    parsed = [parse_yes_no(answer) for answer in answers]
    gold = [item["answer"] for item in suite.meta]
    said = [p for p in parsed if p is not None]
    return {
        "n": len(answers),
        "accuracy": _round(accuracy(parsed, gold)),
        "unparsed": _round(parsed.count(None) / len(parsed)),
        "yes_rate": _round(sum(said) / len(said)) if said else None,
    }


class SqaOptions(StrictModel):
    items: int = Field(60, ge=2, description="spoken questions, synthesised in `probe_voice`")


@register_suite
class Sqa(SuiteSpec):
    name = "sqa"
    summary = "spoken yes/no questions answered as the text instruction asks: accuracy, unparsed share"
    Options = SqaOptions

    def build(self, building: Building, options: SqaOptions) -> dict[str, Suite]:
        folder = building.out / "probes" / "sqa"
        items = synthesise_probes(
            sqa_items(options.items, building.settings.seed), folder, building.settings.probe_voice
        )
        return {"sqa": probe_suite("sqa", items, folder, _durations(folder, items))}

    def score(self, suite: Suite, answers: Sequence[str], scoring: Scoring) -> dict:
        return score_sqa(suite, answers)
