"""The `ifeval` suite: verifiable instructions over the speech, scored by IFEval's own checkers;
IFrate per system, the forgetting rate vs the LLM in text mode, and paired gaps between systems."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.corpus.manifest import ManifestRow
from selfpowered.corpus.quality import sample_rows
from selfpowered.evaluate.intervals import _round, bootstrap_interval
from selfpowered.evaluate.suites import Building, Query, Scoring, Suite, SuiteSpec, register_suite
from selfpowered.text.ifeval import IFItem, check, make_item


# ------------------------------------------------------------------------------------------------
def ifeval_suite(rows: Sequence[ManifestRow], base: Path, seed: int = 0) -> Suite:
    """Each utterance gets a task about the speech plus one constraint (every third: two), drawn
    from the utterance id, so every system gets the same items and a rerun the same."""
    queries, meta = [], []
    for i, row in enumerate(rows):
        item = make_item(row.text, random.Random(f"{seed}:{row.id}"), two_constraints=i % 3 == 2)
        queries.append(Query(f"{row.id}#ifeval", str(row.audio_path(base)), item.instruction, row.text, row.duration))
        meta.append({"constraints": list(item.constraint_ids), "kwargs": list(item.kwargs)})
    return Suite("ifeval", queries, meta)


def score_ifeval(suite: Suite, answers: Sequence[str]) -> dict:
    """IFEval's four accuracies (prompt / instruction level, strict / loose), per constraint type,
    and each item's prompt-level outcome (for the paired comparison with text mode)."""
    prompt = {"strict": [], "loose": []}
    per_constraint: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"strict": [], "loose": []})
    for query, item, answer in zip(suite.queries, suite.meta, answers):
        strict, loose = check(IFItem(query.instruction, tuple(item["constraints"]), tuple(item["kwargs"])), answer)
        prompt["strict"].append(all(strict))
        prompt["loose"].append(all(loose))
        for constraint, s, lo in zip(item["constraints"], strict, loose):
            per_constraint[constraint]["strict"].append(s)
            per_constraint[constraint]["loose"].append(lo)
    flat = {mode: [x for c in per_constraint.values() for x in c[mode]] for mode in ("strict", "loose")}
    return {
        "n": len(answers),
        "prompt_strict": _round(sum(prompt["strict"]) / len(answers)),
        "prompt_loose": _round(sum(prompt["loose"]) / len(answers)),
        "inst_strict": _round(sum(flat["strict"]) / len(flat["strict"])),
        "inst_loose": _round(sum(flat["loose"]) / len(flat["loose"])),
        "per_constraint": {
            c: {
                "n": len(v["strict"]),
                "strict": _round(sum(v["strict"]) / len(v["strict"])),
                "loose": _round(sum(v["loose"]) / len(v["loose"])),
            }
            for c, v in sorted(per_constraint.items())
        },  # fmt: skip
        "followed": prompt,
    }


def ifeval_deltas(scores: dict[str, dict], text: str = "text", mode: str = "strict") -> dict[str, dict]:
    """Per system: IFrate (prompt level) with its interval, and the forgetting rate
    delta = (IFrate - IFrate_text) / IFrate_text with a paired bootstrap interval (the same items
    resampled for both; Speech-IFEval's measure). Empty without the text baseline."""
    if text not in scores:
        return {}
    base = [float(x) for x in scores[text]["followed"][mode]]
    out = {}
    for name, score in scores.items():
        mine = [float(x) for x in score["followed"][mode]]
        pairs = list(zip(mine, base))

        def delta(sample, _pairs=pairs) -> float:
            reference = sum(b for _, b in sample)
            return (sum(m for m, _ in sample) - reference) / reference if reference else float("nan")

        rate = sum(mine) / len(mine)
        out[name] = {
            "ifrate": _round(rate),
            "ifrate_95ci": bootstrap_interval(mine, lambda s: sum(s) / len(s)),
            "delta_vs_text": _round(delta(pairs)) if sum(base) else None,
            "delta_95ci": bootstrap_interval(pairs, delta) if sum(base) else None,
        }
    return out


def ifeval_gaps(scores: dict[str, dict], text: str = "text", mode: str = "strict") -> list[dict]:
    """For each pair of systems (each against every one listed before it, the text baseline left
    out): gap = delta_system - delta_other = (IFrate_system - IFrate_other) / IFrate_text, with a
    paired bootstrap interval that resamples the same items for all three. It is what a target like
    "self-powered delta >= vanilla's + 20 points" is about; two separate intervals overlapping
    says little about it, since both deltas share the text-mode items."""
    if text not in scores or not any(scores[text]["followed"][mode]):
        return []
    base = [float(x) for x in scores[text]["followed"][mode]]
    names = [name for name in scores if name != text]
    out = []
    for i, name in enumerate(names):
        for other in names[:i]:
            triples = list(zip(scores[name]["followed"][mode], scores[other]["followed"][mode], base))

            def gap(sample) -> float:
                reference = sum(t for _, _, t in sample)
                return sum(float(m) - float(o) for m, o, _ in sample) / reference if reference else float("nan")

            out.append(
                {
                    "system": name,
                    "over": other,
                    "gap": _round(gap(triples)),
                    "gap_95ci": bootstrap_interval(triples, gap),
                }
            )
    return out


class IFEvalOptions(StrictModel):
    items: int = Field(80, ge=1, description="utterances of `data` (its seeded draw's first) that get an item")


@register_suite
class IFEval(SuiteSpec):
    name = "ifeval"
    summary = "verifiable instructions over the speech, IFEval's checkers: IFrate, vs the LLM in text mode (paired)"
    Options = IFEvalOptions

    def build(self, building: Building, options: IFEvalOptions) -> dict[str, Suite]:
        settings = building.settings
        rows = sample_rows(Path(settings.data), settings.limit, settings.seed)[: options.items]
        return {"ifeval": ifeval_suite(rows, Path(settings.data).parent, settings.seed)}

    def score(self, suite: Suite, answers: Sequence[str], scoring: Scoring) -> dict:
        return score_ifeval(suite, answers)
