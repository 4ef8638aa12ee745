"""The queries of an evaluation: every requested suite built from its data (seeded draws), the same
for every system."""

from __future__ import annotations

from pathlib import Path

from selfpowered.config import EvalConfig
from selfpowered.corpus.quality import sample_rows
from selfpowered.errors import SelfPoweredError
from selfpowered.evaluate import suites as S
from selfpowered.evaluate.checks import SPECIFIC_CHECKS
from selfpowered.evaluate.ifeval_suite import ifeval_suite
from selfpowered.evaluate.probes import conflict_items, sqa_items, synthesise_probes
from selfpowered.text.tasks import TaskLibrary

IN_DOMAIN = "in-domain"


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
        suites["ifeval"] = ifeval_suite(rows, Path(settings.data).parent, settings.seed)
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
