"""The augmentation loop: manifest rows -> instruction samples whose answers the LLM wrote.

For each row (of this shard): draw a task and template (stable per id), build the text-mode
prompt "{instruction}: {transcript}", ask the engine, filter, write. `asr` samples (and every
sample of the `vanilla` recipe) keep the transcript as the answer and need no LLM.

Resumable by construction: `OUT` (samples) and `OUT.rejects.jsonl` are append-only and keyed by
sample id; on start, every id already in either is skipped, and a line cut short by a kill is
dropped (truncated away) before appending. Each finished sample is written and flushed at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from selfpowered.atomic import atomic_write_text
from selfpowered.augment.filters import RESAMPLED, reject_reason, trim_to_sentences
from selfpowered.config import AugmentConfig, LimitsConfig
from selfpowered.corpus.manifest import ManifestRow, read_manifest
from selfpowered.errors import SelfPoweredError
from selfpowered.jsonl import AppendLog, companion_path, iter_jsonl, rejects_path
from selfpowered.model.generation import build_generator
from selfpowered.text.engines import GenerationRequest, TextGenerator
from selfpowered.text.paraling import sound_prompt, templated_answer, value_of
from selfpowered.text.tasks import ASR_TASK, Draw, TaskLibrary, stable_hash, text_prompt


def sample_id(row: ManifestRow, draw: Draw) -> str:
    return f"{row.id}#{draw.task.name}"


def _sample(row: ManifestRow, base: Path, out: Path, draw: Draw, response: str, source: dict) -> dict[str, Any]:
    return {
        "id": sample_id(row, draw),
        "audio": os.path.relpath(row.audio_path(base).resolve(), out.parent.resolve()),
        "task": draw.task.name,
        "instruction": draw.instruction,
        "response": response,
        "transcript": row.text,
        "duration": round(row.duration, 3),
        "speaker": row.speaker,
        "source": {**source, "template": draw.template_index},
    }


def augment(config: AugmentConfig, engine: TextGenerator | None = None, progress: bool = True) -> dict[str, Any]:
    """`selfpowered augment`: write (or continue) OUT, OUT.rejects.jsonl and OUT.stats.json; returns
    the stats. The engine is built from `config` unless one is given (the vanilla recipe needs none)."""
    library = TaskLibrary.load(config.tasks, config.seed, config.task_weights, config.task_variants)
    if engine is None and config.recipe == "selfpowered":
        engine = build_generator(config)
    manifest, out = Path(config.manifest), Path(config.output)
    started = time.perf_counter()
    # heard_by decodes every clip: each file's header is checked first, so a row whose audio is
    # missing, unreadable or over the duration limit is a reported reject, not unbounded work
    report = read_manifest(manifest, LimitsConfig(check_audio=config.heard_by is not None))
    index, count = config.shard_index_count
    rows = [row for position, row in enumerate(report.rows) if position % count == index]
    if config.limit is not None:
        rows = rows[: config.limit]
    if config.heard_by is not None:
        rows = heard_rows(rows, manifest.parent, config.heard_by, config.hearing_cache, config.device)
    samples, rejects = AppendLog(out), AppendLog(rejects_path(out))
    for reject in report.rejects:  # bad manifest lines are reported once, with their line number
        key = f"manifest-line-{reject.line}"
        if key not in rejects.ids:
            rejects.append({"id": key, "line": reject.line, "reason": f"manifest: {reject.reason}"})
    source = {"generator": engine.model_id if engine else None, "tasks": library.name, "seed": config.seed}
    if config.heard_by is not None:
        source["heard_by"] = config.heard_by
    source["recipe"] = config.recipe
    stats: Counter = Counter()
    kept_per_task: Counter = Counter()
    reasons: Counter = Counter()
    planned: list[tuple[ManifestRow, Draw]] = []
    for row in rows:
        draw = library.draw(row.id, only=ASR_TASK if config.recipe == "vanilla" else None)
        sid = sample_id(row, draw)
        if sid in samples.ids or sid in rejects.ids:
            stats["already_done"] += 1
        else:
            planned.append((row, draw))
    bar = tqdm(total=len(planned), desc=f"augment {out.name}", unit=" sample", disable=not progress)

    def keep(row: ManifestRow, draw: Draw, response: str, attempt: int = 1) -> None:
        decoding = {} if attempt == 1 else {"attempt": attempt, "temperature": config.verify_temperature}
        samples.append(_sample(row, manifest.parent, out, draw, response, {**source, **decoding}))
        kept_per_task[draw.task.name] += 1
        bar.update(1)

    def drop(row: ManifestRow, draw: Draw, reason: str, response: str = "") -> None:
        rejects.append(
            {"id": sample_id(row, draw), "line": None, "task": draw.task.name, "reason": reason, "response": response}
        )
        reasons[reason] += 1
        bar.update(1)

    try:
        llm_work: list[tuple[ManifestRow, Draw]] = []
        for row, draw in planned:
            attribute = draw.task.attribute
            if attribute is not None and not _has_label(row, attribute):
                drop(row, draw, f"no {attribute} label on this clip")
            elif draw.task.answer == "transcript":
                keep(row, draw, row.text)
            elif config.recipe == "templated":
                if attribute is None:
                    raise SelfPoweredError(f"recipe templated: task {draw.task.name!r} is not about how a clip sounds")
                keep(row, draw, _templated(attribute, row.extra["labels"]))
            else:
                llm_work.append((row, draw))
        if llm_work and engine is None:
            raise SelfPoweredError("this recipe and task library need an LLM engine")
        _run_llm(llm_work, engine, config, keep, drop, stats, bar)
    finally:
        bar.close()
        samples.close()
        rejects.close()
    elapsed = time.perf_counter() - started
    result = _stats(config, library, engine, samples, rejects, stats, kept_per_task, reasons, elapsed)
    _write_card(config, library, engine, out)
    atomic_write_text(companion_path(out, "stats.json"), json.dumps(result, indent=1) + "\n")
    return result


def heard_rows(rows: list[ManifestRow], base: Path, whisper: str, cache: str | None, device: str) -> list[ManifestRow]:
    """The rows with their text replaced by what `whisper` hears in the audio (greedy, each clip
    decoded once and cached), the manifest's text kept as `extra["reference"]`: the LLM then
    answers the transcript a cascade - and a transcript-reading LSM - would read."""
    from dataclasses import replace

    from selfpowered.model.hearing import WhisperHearing

    hearing = WhisperHearing(whisper, device=device, cache_dir=cache)
    heard = hearing.transcribe_files([str(row.audio_path(base)) for row in rows])
    return [replace(row, text=text, extra={**row.extra, "reference": row.text}) for row, text in zip(rows, heard)]


def _run_llm(work, engine, config: AugmentConfig, keep, drop, stats, bar) -> None:
    """Ask the engine chunk by chunk, filter, keep or drop. A constrained task's answer that fails
    only its checker is asked again, sampled, up to `verify_attempts` answers in all (rejection
    sampling from the same LLM); the retries go first, so a kill loses at most one chunk."""
    by_id: dict[str, tuple[ManifestRow, Draw]] = {}
    attempts: dict[str, int] = {}
    pending: list[GenerationRequest] = []
    for row, draw in work:
        if draw.task.attribute is not None:  # about how it sounds: the LLM is told the clip's labels too
            prompt = sound_prompt(draw.instruction, row.text, row.extra["labels"])
        else:
            prompt = text_prompt(draw.instruction, row.text)
        tokens = engine.count_prompt_tokens(prompt)
        if tokens is not None and tokens >= config.max_prompt_tokens:
            drop(row, draw, f"prompt too long: {tokens} >= {config.max_prompt_tokens} tokens")
            continue
        sid = sample_id(row, draw)
        by_id[sid], attempts[sid] = (row, draw), 1
        pending.append(GenerationRequest(sid, prompt))
    generation_started = time.perf_counter()
    while pending:
        chunk, pending = pending[: config.chunk_size], pending[config.chunk_size :]
        retries: list[GenerationRequest] = []
        asked = {request.id: request for request in chunk}
        for result in engine.generate(chunk):
            row, draw = by_id[result.id]
            stats["prompt_tokens"] += result.prompt_tokens
            stats["completion_tokens"] += result.completion_tokens
            stats["llm_calls"] += 1
            if result.error:
                drop(row, draw, f"engine error: {result.error}")
                continue
            if result.prompt_tokens >= config.max_prompt_tokens:
                drop(row, draw, f"prompt too long: {result.prompt_tokens} >= {config.max_prompt_tokens} tokens")
                continue
            task = draw.task
            text, finish = result.text, result.finish_reason
            if finish == "length" and config.filters.trim_truncated and trim_to_sentences(text):
                text, finish = trim_to_sentences(text), "stop"  # its complete sentences are the answer
            reason = reject_reason(
                text,
                row.text,
                finish,
                task.copy_allowed,
                config.filters,
                task.final_punctuation,
                draw.instruction,
                task.constraints,
                task.attribute,
                row.extra.get("labels"),
            )
            attempt = attempts[result.id]
            if reason and reason.startswith(RESAMPLED) and attempt < config.verify_attempts:
                attempts[result.id] = attempt + 1
                stats["resampled"] += 1
                retries.append(_resample(asked[result.id], attempt + 1, config))
            elif reason:
                drop(row, draw, reason if attempt == 1 else f"{reason} (after {attempt} attempts)", result.text)
            else:
                stats["kept_after_resampling"] += attempt > 1
                keep(row, draw, text, attempt)
            seconds = time.perf_counter() - generation_started
            bar.set_postfix(tok_s=f"{stats['completion_tokens'] / max(seconds, 1e-9):.1f}")
        pending = retries + pending
    stats["generation_seconds"] = round(time.perf_counter() - generation_started, 3)


def _has_label(row: ManifestRow, attribute: str) -> bool:
    labels = row.extra.get("labels") or {}
    if attribute == "describe":
        return sum(value_of(a, labels) is not None for a in ("gender", "pace", "background", "room")) >= 2
    return value_of(attribute, labels) is not None


def _templated(attribute: str, labels: dict) -> str:
    """The control arm's answer: the clip's labels as fixed sentences (a description: all of them)."""
    if attribute != "describe":
        return templated_answer(attribute, labels)
    parts = (templated_answer(a, labels) for a in ("gender", "pace", "background", "room", "speakers"))
    return " ".join(part for part in parts if part)


def _resample(request: GenerationRequest, attempt: int, config: AugmentConfig) -> GenerationRequest:
    """Attempt `attempt` (2, 3, ...) of a sample: sampled, with a seed fixed by the run's seed, the
    sample id and the attempt, so a resumed run asks exactly what the killed one asked."""
    seed = stable_hash(config.seed, str(attempt), salt=request.id) >> 1  # torch seeds are below 2**63
    return dataclasses.replace(request, temperature=config.verify_temperature, seed=seed)


def _versions() -> dict[str, str]:
    import importlib.metadata

    found = {}
    for package in ("selfpowered", "torch", "transformers", "peft"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _stats(config: AugmentConfig, library, engine, samples, rejects, stats, kept, reasons, elapsed) -> dict:
    generated = stats["completion_tokens"]
    generation_seconds = stats.get("generation_seconds", 0.0)
    this_run = sum(kept.values()) + sum(reasons.values())
    return {
        "manifest": config.manifest,
        "output": config.output,
        "recipe": config.recipe,
        "tasks": library.name,
        "model": engine.model_id if engine else None,
        "seed": config.seed,
        "shard": config.shard,
        "this_run": {
            "processed": this_run,
            "kept_per_task": dict(sorted(kept.items())),
            "rejected_per_reason": dict(sorted(reasons.items())),
            "skipped_already_done": stats["already_done"],
            "llm_calls": stats["llm_calls"],
            "resampled": stats["resampled"],
            "kept_after_resampling": stats["kept_after_resampling"],
            "prompt_tokens": stats["prompt_tokens"],
            "generated_tokens": generated,
            "wall_seconds": round(elapsed, 2),
            "samples_per_s": round(this_run / elapsed, 3) if elapsed else None,
            "generated_tokens_per_s": round(generated / generation_seconds, 2) if generation_seconds else None,
        },
        "totals": {"samples": samples.records, "rejects": rejects.records},
        "versions": _versions(),
    }


def _write_card(config: AugmentConfig, library: TaskLibrary, engine: TextGenerator | None, out: Path) -> None:
    """`OUT.card.json`: who wrote the targets, with which settings and library, from which
    manifest, and how many samples the whole file (every run so far) kept and rejected."""
    from selfpowered.cards import card_path, sha256_file, write_card

    kept: Counter = Counter()
    for _, record, error in iter_jsonl(out):
        if not error:
            kept[record.get("task", "?")] += 1
    rejected: Counter = Counter()
    if rejects_path(out).is_file():
        for _, record, error in iter_jsonl(rejects_path(out)):
            if not error:
                rejected[str(record.get("reason", "?")).split(":")[0]] += 1
    card = {
        "kind": "augmentation",
        "recipe": config.recipe,
        "generator": engine.describe() if engine is not None else None,
        "task_library": {"name": library.name, "sha256": library.digest(), "seed": config.seed},
        "filters": config.filters.model_dump(),
        "verify_attempts": config.verify_attempts,
        "verify_temperature": config.verify_temperature if config.verify_attempts > 1 else None,
        "max_prompt_tokens": config.max_prompt_tokens,
        "manifest": {"path": config.manifest, "sha256": sha256_file(config.manifest)},
        "heard_by": config.heard_by,  # None: the LLM answered the manifest's text
        "counts": {
            "samples": sum(kept.values()),
            "rejects": sum(rejected.values()),
            "kept_per_task": dict(sorted(kept.items())),
            "rejected_per_reason": dict(sorted(rejected.items())),
        },
        "versions": _versions(),
    }
    write_card(card_path(out), card)


def merge_shards(shards: Iterable[str | Path], out: str | Path) -> dict[str, int]:
    """Join shard outputs (and their rejects) into OUT, sorted by id; the same id twice is an
    error unless both copies are identical (a shard rerun)."""
    out = Path(out)
    merged: dict[str, dict] = {}
    merged_rejects: dict[str, dict] = {}
    for shard in shards:
        shard = Path(shard)
        if not shard.is_file():
            raise SelfPoweredError(f"{shard}: shard output not found")
        for target, path in ((merged, shard), (merged_rejects, rejects_path(shard))):
            if not path.is_file():
                continue
            for number, record, error in iter_jsonl(path):
                if error:
                    continue  # a torn last line of a killed shard: that sample was not finished
                if "audio" in record:  # paths are relative to the file they are in: re-anchor them
                    audio = (shard.parent / record["audio"]).resolve()
                    record["audio"] = os.path.relpath(audio, out.parent.resolve())
                previous = target.get(record["id"])
                if previous is not None and previous != record:
                    raise SelfPoweredError(
                        f"{path}:{number}: id {record['id']!r} also appears, different, in another shard"
                    )
                target[record["id"]] = record
    for target, path in ((merged, out), (merged_rejects, rejects_path(out))):
        atomic_write_text(path, "".join(json.dumps(target[key], ensure_ascii=False) + "\n" for key in sorted(target)))
    _merge_cards([Path(shard) for shard in shards], out, merged, merged_rejects)
    return {"samples": len(merged), "rejects": len(merged_rejects)}


def _merge_cards(shards: list[Path], out: Path, merged: dict, rejects: dict) -> None:
    """The merged file's card: the shards' common generator and library, counts of the whole."""
    from selfpowered.cards import card_path, read_card, write_card

    cards = [card for card in (read_card(card_path(shard)) for shard in shards) if card]
    if not cards:
        return
    kept = Counter(record.get("task", "?") for record in merged.values())
    reasons = Counter(str(record.get("reason", "?")).split(":")[0] for record in rejects.values())
    counts = {"samples": len(merged), "rejects": len(rejects), "kept_per_task": dict(sorted(kept.items())),
              "rejected_per_reason": dict(sorted(reasons.items()))}  # fmt: skip
    write_card(card_path(out), {**cards[0], "counts": counts, "merged_from": [str(shard) for shard in shards]})
