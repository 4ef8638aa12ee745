"""`selfpowered eval`: every system answers every suite's queries; scores, costs, report.

The suites are built by `evaluate.build` (the same queries for every system), the answers cached
by `evaluate.cache` (a killed evaluation resumes at the suite it was in, and adding a model to a
finished evaluation runs only that model), the report written by `evaluate.report`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from selfpowered.assets import DEFAULT_LLM
from selfpowered.config import EvalConfig
from selfpowered.errors import SelfPoweredError
from selfpowered.evaluate import suites as S
from selfpowered.evaluate.build import build_suites
from selfpowered.evaluate.cache import PredictionCache, _checkpoint_identity, _predict, parse_model
from selfpowered.evaluate.ifeval_suite import ifeval_deltas, ifeval_gaps, score_ifeval
from selfpowered.evaluate.systems import (
    CascadeSystem,
    Listening,
    LSMSystem,
    Query,
    TextSystem,
)

logger = logging.getLogger(__name__)


def build_systems(settings: EvalConfig, out: Path) -> tuple[list, Listening]:
    """LSMs first, then the baselines; all hear through one `Listening` (Whisper once per clip,
    cached in OUTPUT/hearing, and the base LLM once in memory)."""
    specs = []
    for spec in settings.models:
        name, path = parse_model(spec)
        if name in {n for n, _ in specs} or name in settings.baselines:
            raise SelfPoweredError(f"two systems are called {name!r}; name them with NAME=PATH")
        if not Path(path).is_dir():
            raise SelfPoweredError(f"{path}: no such checkpoint folder (written by `selfpowered train`)")
        specs.append((name, path))
    generation = settings.generation
    llm_name = settings.llm
    if llm_name is None and specs:
        llm_name = LSMSystem(*specs[0], generation.max_new_tokens, generation.batch_size).base_llm_name()
    listening = Listening(llm_name or DEFAULT_LLM, settings.asr_model, settings.device, out / "hearing")
    options = (generation.max_new_tokens, generation.batch_size)
    systems: list = [
        LSMSystem(name, path, *options, settings.device, generation.no_repeat_ngram_size, listening)
        for name, path in specs
    ]
    if "cascade" in settings.baselines:
        systems.append(CascadeSystem(listening, *options, generation.no_repeat_ngram_size))
    if "text" in settings.baselines:
        systems.append(TextSystem(listening, *options, generation.no_repeat_ngram_size))
    return systems, listening


@dataclass
class _Run:
    """What every answer of one evaluation shares: the answer cache, the decoding settings, the
    hearing and base LLM (`Listening`), and each system's cache identity."""

    cache: PredictionCache
    decoding: dict
    chunk_size: int
    listening: Listening
    identity: dict[str, str]

    def predict(self, system, suite: str, queries: list[Query], call, key_suffix: str = ""):
        """Cached or fresh answers of `system` to `queries` (cost included)."""
        identity = self.identity.get(system.name) or _identity(system, self.listening)
        return _predict(self.cache, system.name, identity, suite, queries, call, self.decoding, self.chunk_size,
                        key_suffix, self.listening)  # fmt: skip


def evaluate(settings: EvalConfig) -> dict:
    """Run every suite on every system; write report.json, report.md and plots into `output`."""
    from selfpowered.evaluate.report import write_report

    out = Path(settings.output)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    suites = build_suites(settings, out)
    systems, listening = build_systems(settings, out)
    decoding = {"max_new_tokens": settings.generation.max_new_tokens, "greedy": True}
    if settings.generation.no_repeat_ngram_size:  # (absent when off: earlier caches stay valid)
        decoding["no_repeat_ngram_size"] = settings.generation.no_repeat_ngram_size
    identity = {s.name: _identity(s, listening) for s in systems}
    run = _Run(PredictionCache(out / "predictions"), decoding, settings.chunk_size, listening, identity)
    results: dict = {"systems": {}, "suites": {}, "examples": {}, "cached": []}
    references = _references(run, suites, settings)
    for system in systems:
        results["systems"][system.name] = _answer_all(run, system, suites, references, settings, results, out)
        if system.kind == "lsm":
            system.release()
    _finish(results, suites, references, systems, settings)
    results["seconds"] = round(time.perf_counter() - started, 1)
    write_report(results, out)
    return results


def _references(run: _Run, suites: dict[str, S.Suite], settings: EvalConfig) -> dict[str, list[str]]:
    """Every instruct suite's references: the base LLM's text-mode answer to the true transcript
    (the self-powered targets; the text baseline's answers are these very ones, from the cache)."""
    generation = settings.generation
    text = TextSystem(run.listening, generation.max_new_tokens, generation.batch_size, generation.no_repeat_ngram_size)
    return {
        name: run.predict(text, name, suite.queries, text.answer)[0]
        for name, suite in suites.items()
        if suite.kind == "instruct"
    }


def _answer_all(run: _Run, system, suites, references, settings: EvalConfig, results: dict, out: Path) -> dict:
    """One system's answers to every suite, scored; its text and bias analyses when it is an LSM."""
    row: dict = {"kind": system.kind, "cost": {}}
    answered: dict[str, list[str]] = {}
    for name, suite in suites.items():
        if name == "instruct" and "instruct" not in settings.suites and system.kind != "lsm":
            continue  # built only for the bias analysis
        if suite.kind == "asr" and system.kind == "text":
            continue  # given the transcript: nothing to transcribe
        call = system.transcribe if suite.kind == "asr" else system.answer
        answers, cost, was_cached = run.predict(system, name, suite.queries, call)
        if was_cached:
            results["cached"].append(f"{system.name}/{name}")
        row["cost"][name] = cost
        answered[name] = answers
        results["examples"].setdefault(name, {})[system.name] = answers
    for name, answers in answered.items():
        row[name] = _score(suites, name, answers, references.get(name), answered)
    if "text" in settings.suites and system.kind == "lsm":
        prompts = [Query(f"text-{i:03d}", "", p, p, 0.0) for i, p in enumerate(S.TEXT_PROMPTS)]
        mine = run.predict(system, "text", prompts, lambda qs: system.text_answers([q.instruction for q in qs], True))
        base = run.predict(system, "text", prompts, lambda qs: system.text_answers([q.instruction for q in qs], False),
                           key_suffix="-base")  # fmt: skip
        row["text"] = S.score_text(mine[0], base[0])
        results["examples"].setdefault("text", {})[system.name] = {"adapter": mine[0], "base": base[0]}
    if "bias" in settings.suites and system.kind == "lsm":
        row["bias"] = _bias(system, suites["instruct"], results["examples"]["instruct"][system.name], settings, out)
    return row


def _finish(results: dict, suites: dict, references: dict, systems: list, settings: EvalConfig) -> None:
    """The suites' queries, the references, IFEval's comparisons with text mode, the data cards."""
    from selfpowered.cards import CARD_FILE, read_card

    results["suites"] = {
        name: {"n": len(suite.queries), "kind": suite.kind, "data": suite.data,
               "queries": [q.__dict__ for q in suite.queries], "meta": suite.meta}
        for name, suite in suites.items()
    }  # fmt: skip
    for name, answers in references.items():
        results["examples"].setdefault(name, {})["reference"] = answers
    ifeval = {name: row["ifeval"] for name, row in results["systems"].items() if "ifeval" in row}
    for mode in ("strict", "loose"):  # each system against the LLM in text mode, on the same items
        for name, comparison in ifeval_deltas(ifeval, mode=mode).items():
            results["systems"][name]["ifeval"].setdefault("vs_text", {})[mode] = comparison
        if gaps := ifeval_gaps(ifeval, mode=mode):  # system vs system, paired on the same items
            results.setdefault("ifeval_gaps", {})[mode] = gaps
    results["cards"] = {s.name: read_card(Path(s.checkpoint) / CARD_FILE) for s in systems if s.kind == "lsm"}
    results["settings"] = settings.model_dump(mode="json")


def _identity(system, listening: Listening) -> str:
    """What the cached answers depend on besides the queries: weights and models used (and, for
    what hears through Whisper, the hearing's fingerprint: its weights, compute type, bounds)."""
    if system.kind == "lsm":
        if system.hears:  # its answers depend on what Whisper heard, too
            return f"{_checkpoint_identity(system.checkpoint)}|{system.hearing.fingerprint}"
        return _checkpoint_identity(system.checkpoint)
    if system.kind == "cascade":
        return f"cascade:{listening.hearing.fingerprint}:{listening.generator.model_id}"
    return f"text:{listening.generator.model_id}"


def _score(suites: dict[str, S.Suite], name: str, answers: list[str], references, answered: dict) -> dict:
    """Score one suite's answers; an instruct suite also gets the self-echo rate against the same
    system's transcriptions of the same utterances (its set's asr suite), when it ran."""
    suite = suites[name]
    if suite.kind == "asr":
        return S.score_asr(suite, answers)
    if suite.kind == "instruct":
        asr_name = next((n for n, s in suites.items() if s.kind == "asr" and s.data == suite.data), None)
        transcriptions = None
        if asr_name in answered:
            transcriptions = {S.row_id(q): text for q, text in zip(suites[asr_name].queries, answered[asr_name])}
        return S.score_instruct(suite, answers, references, transcriptions)
    if suite.kind == "conflict":
        return S.score_conflict(suite, answers)
    if suite.kind == "sqa":
        return S.score_sqa(suite, answers)
    if suite.kind == "ifeval":
        return score_ifeval(suite, answers)
    if suite.kind == "paraling":
        from selfpowered.evaluate.sound import score_paraling

        return score_paraling(suite, answers)
    raise ValueError(name)


def _bias(system: LSMSystem, suite: S.Suite, answers: list[str], settings: EvalConfig, out: Path) -> dict:
    """Attention/saliency shares on the first `bias_samples` non-copy instruct queries (cached)."""
    from selfpowered.model.bias import attention_shares, summarise

    chosen = [i for i, m in enumerate(suite.meta) if not m["copy_allowed"]][: settings.bias_samples]
    queries = [suite.queries[i] for i in chosen]
    cache = PredictionCache(out / "predictions")
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
