"""The `text` analysis: is the LLM's own text ability kept? Each LSM's LLM (adapter on) against
the base LLM on text-only prompts: exact agreement and chrF."""

from __future__ import annotations

from collections.abc import Sequence

from selfpowered.evaluate.intervals import _round
from selfpowered.evaluate.suites import Analysis, Query, SuiteSpec, register_suite
from selfpowered.text.metrics import corpus_chrf

TEXT_PROMPTS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Write one sentence about the sea.",
    "What is 12 plus 7?",
    "Give me a synonym for happy.",
    "Explain in one sentence what a computer is.",
    "List the days of the week.",
    "What do bees make?",
    "Write a short greeting for a birthday card.",
    "What is the opposite of cold?",
    "Translate 'thank you' into Spanish.",
    "How many legs does a spider have?",
    "Suggest a name for a pet cat.",
    "What season comes after winter?",
    "Describe a rainy day in one sentence.",
    "What is water made of?",
    "Give one tip for sleeping well.",
    "Which planet is closest to the sun?",
    "Write a question you could ask a new friend.",
    "What is the plural of mouse?",
    "Name a fruit that is yellow.",
    "Why do people wear coats in winter?",
    "Complete the sentence: The early bird...",
    "What is the largest ocean on Earth?",
]


def score_text(with_adapter: Sequence[str], base: Sequence[str]) -> dict:
    """Agreement of the LSM's LLM (adapter on) with the base LLM on text-only prompts."""
    same = [a.strip() == b.strip() for a, b in zip(with_adapter, base)]
    return {
        "n": len(base),
        "exact_match": _round(sum(same) / len(same)),
        "chrf_vs_base": _round(corpus_chrf(list(base), list(with_adapter)), 2),
    }


@register_suite
class TextAbility(SuiteSpec):
    name = "text"
    summary = "each LSM's LLM with its adapter vs the base LLM on 24 text-only prompts: exact match, chrF"

    def analyse(self, analysis: Analysis, options) -> dict:
        system, run = analysis.system, analysis.run
        prompts = [Query(f"text-{i:03d}", "", p, p, 0.0) for i, p in enumerate(TEXT_PROMPTS)]
        mine = run.predict(system, "text", prompts, lambda qs: system.text_answers([q.instruction for q in qs], True))
        base = run.predict(system, "text", prompts, lambda qs: system.text_answers([q.instruction for q in qs], False),
                           key_suffix="-base")  # fmt: skip
        analysis.examples.setdefault("text", {})[system.name] = {"adapter": mine[0], "base": base[0]}
        return score_text(mine[0], base[0])
