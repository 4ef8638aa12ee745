"""`selfpowered eval`: every system answers every suite's queries; scores, costs, report.

Answers are cached per (system, suite) under OUTPUT/predictions, keyed by a fingerprint of the
queries, the decoding settings and the system's weights, so a killed evaluation resumes at the
suite it was in, and adding a model to a finished evaluation runs only that model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from tqdm import tqdm

from selfpowered.assets import DEFAULT_LLM
from selfpowered.atomic import atomic_write_text
from selfpowered.config import EvalConfig
from selfpowered.corpus.quality import sample_rows
from selfpowered.errors import SelfPoweredError
from selfpowered.evaluate import suites as S
from selfpowered.evaluate.checks import SPECIFIC_CHECKS
from selfpowered.evaluate.probes import conflict_items, sqa_items, synthesise_probes
from selfpowered.evaluate.systems import (
    CascadeSystem,
    Listening,
    LSMSystem,
    Query,
    TextSystem,
    cost_summary,
    timed,
)
from selfpowered.text.tasks import TaskLibrary

logger = logging.getLogger(__name__)
IN_DOMAIN = "in-domain"


def parse_model(spec: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` (named after its folder, or the folder above a `final/`)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name.strip(), path.strip()
    path = Path(spec)
    return (path.parent.name if path.name in ("final", "") else path.name) or spec, spec


def _checkpoint_identity(path: str) -> str:
    folder = Path(path)
    parts = [str(folder.resolve())]
    for name in ("model.safetensors", "adapter/adapter_model.safetensors"):
        file = folder / name
        if file.is_file():
            stat = file.stat()
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


class PredictionCache:
    """OUTPUT/predictions/SYSTEM/SUITE.json: answers + cost, valid while the fingerprint matches."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def fingerprint(identity: str, queries: list[Query], settings: dict) -> str:
        digest = hashlib.sha256(identity.encode())
        digest.update(json.dumps(settings, sort_keys=True).encode())
        for q in queries:
            digest.update(f"\0{q.key}\0{q.instruction}\0{q.audio}\0{q.transcript}".encode())
        return digest.hexdigest()[:16]

    def path(self, system: str, suite: str) -> Path:
        return self.folder / system / f"{suite}.json"

    def load(self, system: str, suite: str, fingerprint: str) -> dict | None:
        path = self.path(system, suite)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        return data if data.get("fingerprint") == fingerprint else None

    def save(self, system: str, suite: str, fingerprint: str, record: dict) -> None:
        atomic_write_text(self.path(system, suite), json.dumps({"fingerprint": fingerprint, **record}, indent=1) + "\n")


def _predict(
    cache, system_name, identity, suite_name, queries, call, settings, chunk_size, key_suffix="", listening=None
):
    """Cached or fresh answers of one system on one suite, with the measured cost (Whisper's time
    for each clip included, `systems.timed`)."""
    stored_as = suite_name + key_suffix
    fingerprint = cache.fingerprint(identity, queries, settings)
    hit = cache.load(system_name, stored_as, fingerprint)
    if hit is not None:
        logger.info("%s / %s: %d cached answers", system_name, stored_as, len(hit["answers"]))
        return hit["answers"], hit["cost"], True
    answers: list[str] = []
    seconds = 0.0
    with tqdm(total=len(queries), desc=f"{system_name} / {stored_as}", unit=" q") as bar:
        for start in range(0, len(queries), chunk_size):
            chunk = queries[start : start + chunk_size]
            out, took = timed(call, chunk, listening)
            answers.extend(out)
            seconds += took
            bar.update(len(chunk))
    cost = cost_summary(len(answers), seconds, sum(q.duration for q in queries))
    cache.save(
        system_name, stored_as, fingerprint, {"cost": cost, "answers": answers, "keys": [q.key for q in queries]}
    )
    return answers, cost, False


def _probe_durations(folder: Path, items) -> list[float]:
    import soundfile as sf

    return [sf.info(str(folder / item.audio)).duration for item in items]


def _data_suites(settings: EvalConfig, name: str, path: str, limit: int, seen: TaskLibrary) -> dict[str, S.Suite]:
    """The asr and instruct suites of one test set (`name`: in-domain or an ood set's name)."""
    data = Path(path)
    if not data.is_file():
        raise SelfPoweredError(f"{data}: evaluation manifest not found ({name} set)")
    rows = sample_rows(data, limit, settings.seed)
    suffix = "" if name == IN_DOMAIN else f"@{name}"
    suites: dict[str, S.Suite] = {}
    if "asr" in settings.suites:
        asr = S.asr_suite(rows, data.parent, TaskLibrary.load(settings.asr_tasks, settings.seed))
        suites["asr" + suffix] = S.Suite("asr" + suffix, asr.queries, asr.meta, "asr", name)
    if {"instruct", "bias"} & set(settings.suites) and (suffix == "" or "instruct" in settings.suites):
        heldout = (
            TaskLibrary.load(settings.heldout_tasks, settings.seed, variants=settings.task_variants)
            if settings.heldout_tasks
            else None
        )
        instruct = S.instruct_suite(rows, data.parent, seen, heldout)
        suites["instruct" + suffix] = S.Suite("instruct" + suffix, instruct.queries, instruct.meta, "instruct", name)
    return suites


def build_suites(settings: EvalConfig, out: Path) -> dict[str, S.Suite]:
    """The queries of every requested suite (bias reuses the in-domain instruct queries)."""
    seen = TaskLibrary.load(settings.tasks, settings.seed, variants=settings.task_variants)
    suites = _data_suites(settings, IN_DOMAIN, settings.data, settings.limit, seen)
    for name, path in settings.ood_sets.items():
        suites.update(_data_suites(settings, name, path, settings.ood_limit, seen))
    if "ifeval" in settings.suites:
        rows = sample_rows(Path(settings.data), settings.limit, settings.seed)[: settings.ifeval_items]
        suites["ifeval"] = S.ifeval_suite(rows, Path(settings.data).parent, settings.seed)
    if "content" in settings.suites:
        if not settings.content_data:
            raise SelfPoweredError("the content suite needs content_data (a test manifest, e.g. the ood set)")
        data = Path(settings.content_data)
        if not data.is_file():
            raise SelfPoweredError(f"{data}: content_data manifest not found")
        rows = sample_rows(data, settings.content_limit, settings.seed)
        library = TaskLibrary.load(settings.content_tasks, settings.seed)
        content = S.instruct_suite(rows, data.parent, library, None)
        name = _set_name(settings, settings.content_data)  # its asr suite (same rows) gives the self-echo
        suites["content"] = S.Suite("content", content.queries, content.meta, "instruct", name)
    if "paraling" in settings.suites:
        suites["paraling"] = _paraling_suite(settings, out)
    if "conflict" in settings.suites:
        pairs = [(t.name, template) for t in seen.tasks if t.name in SPECIFIC_CHECKS for template in t.templates]
        if not pairs:
            raise SelfPoweredError(
                f"the conflict suite needs a task with a specific check ({', '.join(SPECIFIC_CHECKS)}) in "
                f"task library {settings.tasks!r}; drop `conflict` from the suites or use another library"
            )
        items = synthesise_probes(
            conflict_items(settings.conflict_items, pairs, settings.seed),
            out / "probes" / "conflict",
            settings.probe_voice,
        )
        folder = out / "probes" / "conflict"
        suites["conflict"] = S.probe_suite("conflict", items, folder, _probe_durations(folder, items))
    if "sqa" in settings.suites:
        folder = out / "probes" / "sqa"
        items = synthesise_probes(sqa_items(settings.sqa_items, settings.seed), folder, settings.probe_voice)
        suites["sqa"] = S.probe_suite("sqa", items, folder, _probe_durations(folder, items))
    return suites


def _set_name(settings: EvalConfig, path: str) -> str:
    """The name a manifest has among the evaluation's sets (in-domain, an ood set) or its stem."""
    same = [name for name, other in settings.ood_sets.items() if Path(other).resolve() == Path(path).resolve()]
    if Path(settings.data).resolve() == Path(path).resolve():
        return IN_DOMAIN
    return same[0] if same else Path(path).stem


def _paraling_suite(settings: EvalConfig, out: Path) -> S.Suite:
    """The labelled test pairs (held-out voices) and the effected real recordings (evaluate.sound)."""
    from selfpowered.config import LimitsConfig
    from selfpowered.corpus.manifest import read_manifest
    from selfpowered.evaluate.sound import effected_real_rows, paraling_suite

    if not settings.paraling_data and not settings.paraling_real:
        raise SelfPoweredError("the paraling suite needs paraling_data (corpus synth --size paraling) or paraling_real")
    sets = {}
    limits = LimitsConfig(check_audio=False)
    if settings.paraling_data:
        data = Path(settings.paraling_data)
        if not data.is_file():
            raise SelfPoweredError(f"{data}: paraling_data manifest not found (corpus synth OUT --size paraling)")
        sets["held-out voices"] = (read_manifest(data, limits).rows, data.parent)
    if settings.paraling_real:
        real = Path(settings.paraling_real)
        if not real.is_file():
            raise SelfPoweredError(f"{real}: paraling_real manifest not found")
        rows = effected_real_rows(read_manifest(real, limits).rows, real.parent, out / "probes" / "paraling-real")
        sets["real, effects applied"] = (rows, out)
    return paraling_suite(sets, TaskLibrary.load(settings.paraling_tasks, settings.seed))


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


def evaluate(settings: EvalConfig) -> dict:
    """Run every suite on every system; write report.json, report.md and plots into `output`."""
    from selfpowered.evaluate.report import write_report

    out = Path(settings.output)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    suites = build_suites(settings, out)
    systems, listening = build_systems(settings, out)
    cache = PredictionCache(out / "predictions")
    decoding = {"max_new_tokens": settings.generation.max_new_tokens, "greedy": True}
    if settings.generation.no_repeat_ngram_size:  # (absent when off: earlier caches stay valid)
        decoding["no_repeat_ngram_size"] = settings.generation.no_repeat_ngram_size
    identity = {s.name: _identity(s, listening) for s in systems}
    results: dict = {"systems": {}, "suites": {}, "examples": {}, "cached": []}

    # references for every instruct suite: the base LLM's text-mode answer to the true transcript
    generation = settings.generation
    reference_system = TextSystem(
        listening, generation.max_new_tokens, generation.batch_size, generation.no_repeat_ngram_size
    )
    references: dict[str, list[str]] = {}
    for name, suite in suites.items():
        if suite.kind == "instruct":
            references[name], _, _ = _predict(
                cache,
                reference_system.name,
                _identity(reference_system, listening),
                name,
                suite.queries,
                reference_system.answer,
                decoding,
                settings.chunk_size,
            )
    for system in systems:
        row: dict = {"kind": system.kind, "cost": {}}
        answered: dict[str, list[str]] = {}
        for name, suite in suites.items():
            if name == "instruct" and "instruct" not in settings.suites and system.kind != "lsm":
                continue  # built only for the bias analysis
            if suite.kind == "asr" and system.kind == "text":
                continue  # given the transcript: nothing to transcribe
            call = system.transcribe if suite.kind == "asr" else system.answer
            answers, cost, was_cached = _predict(
                cache,
                system.name,
                identity[system.name],
                name,
                suite.queries,
                call,
                decoding,
                settings.chunk_size,
                listening=listening,
            )
            if was_cached:
                results["cached"].append(f"{system.name}/{name}")
            row["cost"][name] = cost
            answered[name] = answers
            results["examples"].setdefault(name, {})[system.name] = answers
        for name, answers in answered.items():
            row[name] = _score(suites, name, answers, references.get(name), answered)
        if "text" in settings.suites and system.kind == "lsm":
            prompts = [Query(f"text-{i:03d}", "", p, p, 0.0) for i, p in enumerate(S.TEXT_PROMPTS)]
            mine, _, _ = _predict(
                cache,
                system.name,
                identity[system.name],
                "text",
                prompts,
                lambda qs, lsm=system: lsm.text_answers([q.instruction for q in qs], True),
                decoding,
                settings.chunk_size,
            )
            base, _, _ = _predict(
                cache,
                system.name,
                identity[system.name],
                "text",
                prompts,
                lambda qs, lsm=system: lsm.text_answers([q.instruction for q in qs], False),
                decoding,
                settings.chunk_size,
                key_suffix="-base",
            )
            row["text"] = S.score_text(mine, base)
            results["examples"].setdefault("text", {})[system.name] = {"adapter": mine, "base": base}
        if "bias" in settings.suites and system.kind == "lsm":
            row["bias"] = _bias(system, suites["instruct"], results["examples"]["instruct"][system.name], settings, out)
        results["systems"][system.name] = row
        if system.kind == "lsm":
            system.release()
    results["suites"] = {
        name: {
            "n": len(suite.queries),
            "kind": suite.kind,
            "data": suite.data,
            "queries": [q.__dict__ for q in suite.queries],
            "meta": suite.meta,
        }
        for name, suite in suites.items()
    }
    for name, answers in references.items():
        results["examples"].setdefault(name, {})["reference"] = answers
    ifeval = {name: row["ifeval"] for name, row in results["systems"].items() if "ifeval" in row}
    for mode in ("strict", "loose"):  # each system against the LLM in text mode, on the same items
        for name, comparison in S.ifeval_deltas(ifeval, mode=mode).items():
            results["systems"][name]["ifeval"].setdefault("vs_text", {})[mode] = comparison
        if gaps := S.ifeval_gaps(ifeval, mode=mode):  # system vs system, paired on the same items
            results.setdefault("ifeval_gaps", {})[mode] = gaps
    from selfpowered.cards import CARD_FILE, read_card

    results["cards"] = {s.name: read_card(Path(s.checkpoint) / CARD_FILE) for s in systems if s.kind == "lsm"}
    results["settings"] = settings.model_dump(mode="json")
    results["seconds"] = round(time.perf_counter() - started, 1)
    write_report(results, out)
    return results


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
        return S.score_ifeval(suite, answers)
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
