"""`selfpowered eval`: every system answers every suite's queries; scores, costs, report.

The queries are built by the suites registered in `evaluate.suites` (the same for every system),
the answers cached by `evaluate.cache` (a killed evaluation resumes at the suite it was in, and
adding a model to a finished evaluation runs only that model), the report written by
`evaluate.report`.
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
from selfpowered.evaluate.cache import PredictionCache, _checkpoint_identity, _predict, parse_model
from selfpowered.evaluate.suites.ifeval import ifeval_deltas, ifeval_gaps
from selfpowered.evaluate.systems import CascadeSystem, Listening, LSMSystem, Query, TextSystem

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
    suites = S.build_all(settings, out)
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
    """One system's answers to every suite, scored; the analyses of it when it is an LSM."""
    row: dict = {"kind": system.kind, "cost": {}}
    answered: dict[str, list[str]] = {}
    for name, suite in suites.items():
        if not suite.asked or (suite.lsm_only and system.kind != "lsm"):
            continue  # built only for an analysis of the LSMs
        if suite.kind == "asr" and system.kind == "text":
            continue  # given the transcript: nothing to transcribe
        call = system.transcribe if suite.kind == "asr" else system.choose if suite.closed else system.answer
        answers, cost, was_cached = run.predict(system, name, suite.queries, call)
        if was_cached:
            results["cached"].append(f"{system.name}/{name}")
        row["cost"][name] = cost
        answered[name] = answers
        results["examples"].setdefault(name, {})[system.name] = answers
    options = S.resolve_suites(settings)
    for name, answers in answered.items():
        row[name] = S.score(suites, name, answers, S.Scoring(suites, references.get(name), answered, options))
    if system.kind == "lsm":
        analysis = S.Analysis(run, system, suites, answered, out, results["examples"])
        for name, values in options.items():
            if (summary := S.SUITES[name].analyse(analysis, values)) is not None:
                row[name] = summary
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
