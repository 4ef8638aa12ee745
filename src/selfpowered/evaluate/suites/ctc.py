"""The `ctc` analysis: what each LSM's connector spells on its own, through a CTC head over the
LLM's token embeddings - no LLM. Greedy CTC WER on every test set (in-domain and each ood set),
overall and per speaker. It measures the speech path itself: what `align` taught a connector, and
how far tuning moved it (a `ctc_posterior` LSM carries its head; an `align` output keeps its head
beside final/). An LSM with neither is reported as having no head."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.evaluate.intervals import _round
from selfpowered.evaluate.suites import Analysis, Building, Query, Suite, SuiteSpec, register_suite
from selfpowered.evaluate.suites.asr import _wer_by, set_rows, suffix
from selfpowered.evaluate.tables import fmt, table
from selfpowered.text.metrics import word_error_rate


class CtcOptions(StrictModel):
    batch_size: int = Field(16, ge=1, le=256, description="clips per connector batch")


def ctc_suite(name: str, data: str, rows, base: Path) -> Suite:
    """One unasked query per clip: the analysis reads the audio and the transcript itself."""
    queries = [Query(f"{row.id}#ctc", str(row.audio_path(base)), "", row.text, row.duration) for row in rows]
    speakers = [{"speaker": row.speaker or "?"} for row in rows]
    return Suite(name, queries, speakers, "ctc", data, lsm_only=True, asked=False)


def score_ctc(suite: Suite, hypotheses: Sequence[str]) -> dict:
    """Greedy CTC WER overall and per speaker, with two examples."""
    refs = [q.transcript for q in suite.queries]
    return {
        "n": len(refs),
        "ctc_wer": _round(word_error_rate(refs, hypotheses).wer),
        "per_speaker": _wer_by(suite, refs, hypotheses, lambda i, item: item.get("speaker", "?")),
        "examples": [{"ref": refs[i], "hyp": hypotheses[i]} for i in range(min(2, len(refs)))],
    }


@register_suite
class Ctc(SuiteSpec):
    name = "ctc"
    summary = "greedy CTC WER of each LSM's connector alone through its CTC head (align's or a ctc_posterior's)"
    default = False
    Options = CtcOptions

    def build(self, building: Building, options: CtcOptions) -> dict[str, Suite]:
        suites = {}
        for data, path, limit in building.test_sets():
            name = "ctc" + suffix(data)
            suites[name] = ctc_suite(name, data, set_rows(data, path, limit, building.settings.seed), Path(path).parent)
        return suites

    def analyse(self, analysis: Analysis, options: CtcOptions) -> dict:
        from selfpowered.evaluate.cache import PredictionCache, _checkpoint_identity
        from selfpowered.model.ctc import ctc_transcribe, find_head

        system = analysis.system
        head = find_head(system.model, system.checkpoint)
        if head is None:
            return {"head": None}
        tensors = head.tensors()
        head_id = hashlib.sha256(b"".join(tensors[k].numpy().tobytes() for k in sorted(tensors))).hexdigest()[:16]
        cache = PredictionCache(analysis.out / "predictions")
        summary: dict = {"head": head_id}
        for name, suite in analysis.suites.items():
            if suite.kind != "ctc":
                continue
            fingerprint = cache.fingerprint(_checkpoint_identity(system.checkpoint), suite.queries, {"head": head_id})
            hit = cache.load(system.name, name, fingerprint)
            if hit is None:
                hypotheses = ctc_transcribe(system.model, head, [q.audio for q in suite.queries], options.batch_size)
                cache.save(system.name, name, fingerprint, {"hypotheses": hypotheses})
            else:
                hypotheses = hit["hypotheses"]
            summary[suite.data] = score_ctc(suite, hypotheses)
        return summary


def ctc_tables(results: dict) -> list[str]:
    """The report's section: greedy CTC WER per LSM and set (LSMs without a head say so)."""
    rows = {name: row["ctc"] for name, row in results["systems"].items() if "ctc" in row}
    if not rows:
        return []
    sets = sorted({key for summary in rows.values() for key in summary if key != "head"})
    lines = [
        "## The connector alone: greedy CTC WER (ctc suite)",
        "",
        "What each LSM's connector spells through its CTC head over the LLM's token embeddings, no LLM "
        "(the speech path itself; `-`: the LSM has no CTC head).",
        "",
    ]
    body = [
        [name, *(fmt(summary[s]["ctc_wer"]) if s in summary else "-" for s in sets)] for name, summary in rows.items()
    ]
    return lines + table(["system", *sets], body) + [""]
