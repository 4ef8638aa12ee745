"""The `bias` analysis: where each LSM looks while it answers. Attention and saliency shares of the
speech, the instruction and the answer so far (`model.bias`), on the in-domain instruct queries
whose task must not copy the speech; cached beside the answers."""

from __future__ import annotations

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.evaluate.suites import Analysis, Building, Suite, SuiteSpec, register_suite
from selfpowered.evaluate.suites.instruct import in_domain_instruct


class BiasOptions(StrictModel):
    samples: int = Field(24, ge=1, description="instruct queries per LSM (their first, non-copy tasks)")


@register_suite
class Bias(SuiteSpec):
    name = "bias"
    summary = "attention and saliency shares of speech vs instruction while each LSM answers (in-domain instruct)"
    Options = BiasOptions

    def build(self, building: Building, options: BiasOptions) -> dict[str, Suite]:
        if "instruct" in building.selected:
            return {}  # the instruct suite's own queries
        return {"instruct": in_domain_instruct(building, lsm_only=True)}

    def analyse(self, analysis: Analysis, options: BiasOptions) -> dict:
        from selfpowered.evaluate.cache import PredictionCache, _checkpoint_identity
        from selfpowered.model.bias import attention_shares, summarise

        system, suite = analysis.system, analysis.suites["instruct"]
        answers = analysis.answered["instruct"]
        chosen = [i for i, m in enumerate(suite.meta) if not m["copy_allowed"]][: options.samples]
        queries = [suite.queries[i] for i in chosen]
        cache = PredictionCache(analysis.out / "predictions")
        fingerprint = cache.fingerprint(
            _checkpoint_identity(system.checkpoint), queries, {"answers": [answers[i] for i in chosen]}
        )
        hit = cache.load(system.name, "bias", fingerprint)
        if hit is not None:
            return hit["summary"]
        shares = attention_shares(
            system.model, [q.audio for q in queries], [q.instruction for q in queries], [answers[i] for i in chosen]
        )
        summary = summarise(shares)
        cache.save(system.name, "bias", fingerprint, {"summary": summary})
        return summary
