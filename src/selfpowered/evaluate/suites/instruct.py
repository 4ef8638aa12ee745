"""The `instruct` suite: each utterance of each test set gets one non-ASR instruction of the task
library the models were trained with (held-out wordings in alternate rounds); scored by echo and
self-echo rates, consistency with the LLM's own text-mode answer, the task checks, loops."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from selfpowered.corpus.manifest import ManifestRow
from selfpowered.evaluate.checks import CHECKS, target_language, task_check
from selfpowered.evaluate.intervals import _round, bootstrap_interval
from selfpowered.evaluate.suites import (
    IN_DOMAIN,
    Building,
    Query,
    Scoring,
    Suite,
    SuiteSpec,
    register_suite,
    row_id,
)
from selfpowered.evaluate.suites.asr import set_rows, suffix
from selfpowered.text.echo import is_echo
from selfpowered.text.loops import is_loop
from selfpowered.text.metrics import bleu_tokenizer, corpus_bleu, corpus_chrf
from selfpowered.text.tasks import ASR_TASK, TaskLibrary


def _mean_of(blocks: dict[str, dict], names: Sequence[str], key: str) -> float | None:
    values = [blocks[name][key] for name in names if blocks[name].get(key) is not None]
    return _round(sum(values) / len(values)) if values else None


def instruct_suite(rows: Sequence[ManifestRow], base: Path, seen: TaskLibrary, heldout: TaskLibrary | None) -> Suite:
    """Each utterance gets one non-ASR instruction: tasks take turns; with a held-out library,
    alternate rounds use its never-trained wording. Templates are drawn by the library's
    seeded hash of the utterance id, as augmentation draws them."""
    tasks = [t.name for t in seen.tasks if t.name != ASR_TASK]
    if heldout is not None:
        missing = [name for name in tasks if name not in {t.name for t in heldout.tasks}]
        if missing:
            tasks = [name for name in tasks if name not in missing]
    if not tasks:
        raise ValueError(f"task library {seen.name!r} has no non-ASR task to evaluate")
    queries, meta = [], []
    for i, row in enumerate(rows):
        task = tasks[i % len(tasks)]
        use_heldout = heldout is not None and (i // len(tasks)) % 2 == 1
        library = heldout if use_heldout else seen
        draw = library.draw(row.id, only=task)
        queries.append(Query(f"{row.id}#{task}", str(row.audio_path(base)), draw.instruction, row.text, row.duration))
        meta.append(
            {"task": task, "wording": "heldout" if use_heldout else "seen", "copy_allowed": draw.task.copy_allowed}
        )
    return Suite("instruct", queries, meta)


def self_echoes(answer: str, own_transcription: str | None) -> bool | None:
    """Does the answer repeat this system's *own* transcription of the same audio? None when the
    system has none. Unlike the echo against the true transcript, this keeps measuring the speech
    anchor bias when the transcription itself is wrong (out of domain)."""
    if own_transcription is None:
        return None
    if not own_transcription.strip() or not any(ch.isalnum() for ch in own_transcription):
        return False
    try:
        return is_echo(answer, own_transcription)
    except ValueError:  # the transcription normalises to nothing: there is nothing to repeat
        return False


def score_instruct(
    suite: Suite,
    answers: Sequence[str],
    references: Sequence[str],
    transcriptions: dict[str, str] | None = None,
) -> dict:
    """Per task: echo rate, self-echo rate (against the system's own transcription of the same
    utterance, when `transcriptions` maps row ids to them), consistency (chrF vs the LLM's
    text-mode answer), task check pass rate, and BLEU where a target language is asked for.
    Summaries: means over tasks (echo rates only over tasks whose answer must not copy the speech),
    and seen vs held-out wording."""
    groups: dict[str, list[int]] = defaultdict(list)
    wordings: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(suite.meta):
        groups[item["task"]].append(i)
        wordings[item["wording"]].append(i)

    def block(indices: list[int]) -> dict:
        queries = [suite.queries[i] for i in indices]
        mine, refs = [answers[i] for i in indices], [references[i] for i in indices]
        echo = [is_echo(a, q.transcript) for a, q in zip(mine, queries)]
        own = [self_echoes(a, transcriptions.get(row_id(q))) for a, q in zip(mine, queries)] if transcriptions else []
        own = [x for x in own if x is not None]
        checks = [
            task_check(suite.meta[i]["task"], answers[i], q.transcript, q.instruction) for i, q in zip(indices, queries)
        ]
        checked = [c for c in checks if c is not None]
        out = {
            "n": len(indices),
            "echo_rate": _round(sum(echo) / len(echo)),
            "self_echo_rate": _round(sum(own) / len(own)) if own else None,
            "consistency_chrf": _round(corpus_chrf(refs, mine), 2),
            "task_check": _round(sum(checked) / len(checked)) if checked else None,
            "loop_rate": _round(sum(is_loop(a) for a in mine) / len(mine)),
        }
        languages = {target_language(q.instruction) for q in queries} - {None, "en"}
        if len(languages) == 1:
            language = languages.pop()
            out["bleu"] = _round(corpus_bleu(refs, mine, language), 2)
            out["bleu_tokenizer"] = bleu_tokenizer(language)
        return out

    per_task = {task: block(idx) for task, idx in sorted(groups.items())}
    no_copy = [task for task in per_task if not any(suite.meta[i]["copy_allowed"] for i in groups[task])]
    checked = [t for t in per_task if per_task[t]["task_check"] is not None]
    return {
        "n": len(answers),
        "per_task": per_task,
        "per_wording": {wording: block(idx) for wording, idx in sorted(wordings.items())},
        "echo_rate": _round(sum(per_task[t]["echo_rate"] for t in no_copy) / len(no_copy)) if no_copy else None,
        "self_echo_rate": _mean_of(per_task, no_copy, "self_echo_rate"),
        "consistency_chrf": _round(sum(v["consistency_chrf"] for v in per_task.values()) / len(per_task), 2),
        "task_check": _round(sum(per_task[t]["task_check"] for t in checked) / len(checked)) if checked else None,
        "loop_rate": _round(sum(is_loop(a) for a in answers) / len(answers)),
        "checks": {task: CHECKS[task][0] for task in per_task if task in CHECKS},
        "intervals": _instruct_intervals(suite, answers, references),
    }


def _instruct_intervals(suite: Suite, answers: Sequence[str], references: Sequence[str]) -> dict:
    """95% bootstrap intervals over the items (all tasks pooled) of the echo rate (tasks that must
    not copy), the task check and consistency, for comparing systems on the same items."""
    no_copy = [i for i, m in enumerate(suite.meta) if not m["copy_allowed"]]
    echo = [float(is_echo(answers[i], suite.queries[i].transcript)) for i in no_copy]
    checks = [
        task_check(m["task"], answers[i], suite.queries[i].transcript, suite.queries[i].instruction)
        for i, m in enumerate(suite.meta)
    ]
    checked = [float(c) for c in checks if c is not None]
    pairs = list(zip(references, answers))
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {
        "echo_rate_95ci": bootstrap_interval(echo, mean) if echo else None,
        "task_check_95ci": bootstrap_interval(checked, mean) if checked else None,
        "consistency_chrf_95ci": bootstrap_interval(
            pairs, lambda s: corpus_chrf([r for r, _ in s], [a for _, a in s]), draws=200
        ),
    }


def heldout_library(building: Building) -> TaskLibrary | None:
    settings = building.settings
    if not settings.heldout_tasks:
        return None
    return TaskLibrary.load(settings.heldout_tasks, settings.seed, variants=settings.task_variants)


def in_domain_instruct(building: Building, lsm_only: bool = False) -> Suite:
    """The in-domain set's instruct queries (also what the bias analysis reads)."""
    rows = set_rows(IN_DOMAIN, building.settings.data, building.settings.limit, building.settings.seed)
    made = instruct_suite(rows, Path(building.settings.data).parent, building.seen, heldout_library(building))
    return Suite("instruct", made.queries, made.meta, "instruct", IN_DOMAIN, lsm_only)


def own_transcriptions(suite: Suite, scoring: Scoring) -> dict[str, str] | None:
    """This system's transcriptions of the suite's utterances: the asr suite of the same set, when it ran."""
    asr = next((n for n, s in scoring.suites.items() if s.kind == "asr" and s.data == suite.data), None)
    if asr not in scoring.answered:
        return None
    return {row_id(q): text for q, text in zip(scoring.suites[asr].queries, scoring.answered[asr])}


@register_suite
class Instruct(SuiteSpec):
    name = "instruct"
    summary = (
        "the trained task types (seen and held-out wordings) on every test set: echo, self-echo, "
        "consistency chrF vs the LLM's own answer, task check, loop rate"
    )

    def build(self, building: Building, options) -> dict[str, Suite]:
        suites = {"instruct": in_domain_instruct(building)}
        heldout = heldout_library(building)
        for data, path, limit in building.test_sets()[1:]:
            rows = set_rows(data, path, limit, building.settings.seed)
            made = instruct_suite(rows, Path(path).parent, building.seen, heldout)
            suites["instruct" + suffix(data)] = Suite(
                "instruct" + suffix(data), made.queries, made.meta, "instruct", data
            )
        return suites

    def score(self, suite: Suite, answers: Sequence[str], scoring: Scoring) -> dict:
        return score_instruct(suite, answers, scoring.references, own_transcriptions(suite, scoring))
