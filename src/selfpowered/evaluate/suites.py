"""Evaluation suites: which queries each asks, and how its answers are scored.

Building items and scoring answers are pure functions of their inputs (seeded), so the same data
gives the same questions to every system and a scorer can be pinned by tests on hand-made cases.
Running the systems and caching their answers is `evaluate.run`'s job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from selfpowered.corpus.manifest import ManifestRow
from selfpowered.evaluate.checks import CHECKS, target_language, task_check
from selfpowered.evaluate.intervals import bootstrap_interval
from selfpowered.evaluate.probes import SPOKEN_COMMANDS, ProbeItem
from selfpowered.evaluate.systems import Query
from selfpowered.text.echo import is_echo
from selfpowered.text.loops import is_loop
from selfpowered.text.metrics import (
    accuracy,
    bleu_tokenizer,
    character_error_rate,
    corpus_bleu,
    corpus_chrf,
    parse_yes_no,
    word_error_rate,
)
from selfpowered.text.tasks import ASR_TASK, TaskLibrary


@dataclass
class Suite:
    """One suite's queries (the same for every system) and what each query is about. `kind` says
    how it is run and scored (asr, instruct, conflict, sqa); `data` names the test set it was drawn
    from (`in-domain` for `EvalConfig.data`, else a key of `EvalConfig.ood_sets`)."""

    name: str
    queries: list[Query]
    meta: list[dict] = field(default_factory=list)
    kind: str = ""
    data: str = "in-domain"

    def __post_init__(self) -> None:
        self.kind = self.kind or self.name


def row_id(query: Query) -> str:
    """The utterance a query is about (`<row id>#<task>` keys), to pair a system's answers to
    one utterance across suites."""
    return query.key.rsplit("#", 1)[0]


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _mean_of(blocks: dict[str, dict], names: Sequence[str], key: str) -> float | None:
    values = [blocks[name][key] for name in names if blocks[name].get(key) is not None]
    return _round(sum(values) / len(values)) if values else None


# ------------------------------------------------------------------------------------------------
# asr
# ------------------------------------------------------------------------------------------------
def asr_suite(rows: Sequence[ManifestRow], base: Path, library: TaskLibrary) -> Suite:
    """Every utterance once, the library's ASR templates taking turns (so each is scored)."""
    templates = library.task(ASR_TASK).templates
    queries, meta = [], []
    for i, row in enumerate(rows):
        index = i % len(templates)
        queries.append(Query(f"{row.id}#asr", str(row.audio_path(base)), templates[index], row.text, row.duration))
        meta.append({"template": index, "speaker": row.speaker or "?"})
    return Suite("asr", queries, meta)


def score_asr(suite: Suite, hypotheses: Sequence[str]) -> dict:
    """WER (with substitutions / deletions / insertions and the miss rate) and CER overall, WER per
    template and the mean over templates (the paper reports one number per prompt)."""
    refs = [q.transcript for q in suite.queries]
    overall = word_error_rate(refs, hypotheses)
    per_template: dict[int, list[int]] = defaultdict(list)
    for i, item in enumerate(suite.meta):
        per_template[item["template"]].append(i)
    template_wer = {
        suite.queries[idx[0]].instruction: _round(
            word_error_rate([refs[i] for i in idx], [hypotheses[i] for i in idx]).wer
        )
        for _, idx in sorted(per_template.items())
    }
    per_speaker: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(suite.meta):
        per_speaker[item.get("speaker", "?")].append(i)
    speaker_wer = {
        speaker: _round(word_error_rate([refs[i] for i in idx], [hypotheses[i] for i in idx]).wer)
        for speaker, idx in sorted(per_speaker.items())
    }
    return {
        "n": len(refs),
        "wer": _round(overall.wer),
        "miss_rate": _round(overall.miss_rate),
        "cer": _round(character_error_rate(refs, hypotheses)),
        "substitutions": overall.substitutions,
        "deletions": overall.deletions,
        "insertions": overall.insertions,
        "reference_words": overall.reference_words,
        "wer_per_template": template_wer,
        "wer_mean_over_templates": _round(sum(template_wer.values()) / len(template_wer)),
        "wer_per_speaker": speaker_wer,
    }


# ------------------------------------------------------------------------------------------------
# instruct
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# conflict and sqa (spoken probes)
# ------------------------------------------------------------------------------------------------
def probe_suite(name: str, items: Sequence[ProbeItem], folder: Path, durations: Sequence[float]) -> Suite:
    queries = [
        Query(item.id, str(folder / item.audio), item.instruction, item.speech_text, duration)
        for item, duration in zip(items, durations)
    ]
    meta = [{"task": item.task, "command": item.command, "answer": item.answer} for item in items]
    return Suite(name, queries, meta)


def conflict_verdict(answer: str, spoken: str, command: str, task: str, instruction: str) -> str:
    """Whom the answer obeys: `speech` (did what the voice said), `echo` (repeated the voice),
    `text` (passed the text instruction's task check), or `neither`. Obeying the voice is
    checked first: an answer that does both did not let the text instruction win."""
    if SPOKEN_COMMANDS[command].obeyed(answer):
        return "speech"
    if is_echo(answer, spoken):
        return "echo"
    if task_check(task, answer, spoken, instruction):
        return "text"
    return "neither"


def score_conflict(suite: Suite, answers: Sequence[str]) -> dict:
    verdicts = [
        conflict_verdict(a, q.transcript, m["command"], m["task"], q.instruction)
        for a, q, m in zip(answers, suite.queries, suite.meta)
    ]
    shares = {v: _round(verdicts.count(v) / len(verdicts)) for v in ("text", "speech", "echo", "neither")}
    per_command: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for verdict, item in zip(verdicts, suite.meta):
        per_command[item["command"]][verdict] += 1
    return {
        "n": len(answers),
        "follows_text": shares["text"],
        "follows_speech": shares["speech"],
        "echo": shares["echo"],
        "neither": shares["neither"],
        "per_command": {k: dict(v) for k, v in sorted(per_command.items())},
        "verdicts": verdicts,
    }


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


# ------------------------------------------------------------------------------------------------
# text: is the LLM's own text ability kept?
# ------------------------------------------------------------------------------------------------
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
