"""`selfpowered tag`: fit a checkpoint's sound tagger (model/sound_tags.py) on a labelled corpus.

Whisper hears every clip once (through the model's own hearing settings, so a training run's hearing
cache is reused), each clip's states are pooled as they arrive, and one linear classifier per
attribute is fitted on the labels the corpus records (true by construction). With `dev`, each
attribute is scored on the dev clips made for it (the paraling dev pairs: the same sentence under
both values, held-out voices) - the number to choose by; the tagger then goes into the checkpoint,
where the processor reads it, and every later prompt of that model says how its clip sounds.

With a judge (the default), the line is shown only to instructions about the sound: an
`InstructionJudge` is fitted on the *training* libraries' wordings (`JUDGE_TASKS`) over the LLM's
own input embeddings, and scored on the eval's held-out wordings (`JUDGE_HELD_OUT`, a measurement
written to the stats, never fitted on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from selfpowered.atomic import atomic_write_text
from selfpowered.config import LimitsConfig
from selfpowered.corpus.manifest import read_manifest
from selfpowered.errors import SelfPoweredError
from selfpowered.model.sound_tags import InstructionJudge, SoundTagger, instruction_ids, pooled_states
from selfpowered.text.paraling import value_of
from selfpowered.text.tasks import TaskLibrary

STATS_FILE = "sound_tagger.stats.json"
# what the judge learns "about the sound" from, and what else: training libraries only
JUDGE_TASKS = {"sound": ("paraling", "paraling-closed"), "other": ("demo", "paper", "demo-ifeval")}
# the eval's own wordings (paraling suite; content, demo and paper held-out): scored, never fitted on
JUDGE_HELD_OUT = {"sound": ("paraling-heldout",), "other": ("content", "demo-heldout", "paper-heldout")}


def labelled_clips(manifests: Sequence[str | Path], limit: int | None) -> tuple[list[tuple[Path, dict]], list[str]]:
    """(audio path, labels) of every row that has labels, in file order (at most `limit`), and the
    rejected lines. Every file's header is checked against the corpus limits first, so a missing,
    unreadable or over-long clip is a reported reject (file:line: reason), never decoded."""
    clips, rejected = [], []
    for manifest in manifests:
        path = Path(manifest)
        report = read_manifest(path, LimitsConfig())
        rejected += [f"{path}:{reject.line}: {reject.reason}" for reject in report.rejects]
        clips += [(row.audio_path(path.parent), row.extra["labels"]) for row in report.rows if row.extra.get("labels")]
    if not clips:
        raise SelfPoweredError(f"{', '.join(map(str, manifests))}: no row has `labels` (a paraling corpus has)")
    return (clips[:limit] if limit else clips), rejected


def pooled_clips(hearing, clips: list[tuple[Path, dict]]) -> list[np.ndarray]:
    """Each clip's pooled states as (1, 2 d) - what the tagger reads - one clip in memory at a time."""
    pooled = []
    for (path, _), heard in zip(clips, hearing.each_heard([str(path) for path, _ in clips])):
        if heard.states is None:
            raise SelfPoweredError(f"{path}: Whisper kept no encoder states for this clip")
        pooled.append(pooled_states(heard.states)[None])
    return pooled


def dev_accuracy(tagger: SoundTagger, pooled: list[np.ndarray], labels: list[dict]) -> dict[str, dict]:
    """Per attribute: accuracy on the clips designed for it (all labelled clips when none is)."""
    scores = {}
    for attribute, classifier in tagger.classifiers.items():
        designed = [i for i, row in enumerate(labels) if row.get("designed_for") == attribute]
        chosen = designed or list(range(len(labels)))
        pairs = [(i, value_of(attribute, labels[i])) for i in chosen]
        pairs = [(i, truth) for i, truth in pairs if truth in classifier.values]
        if not pairs:
            continue
        predicted = classifier.predict(np.concatenate([pooled[i] for i, _ in pairs]))
        right = sum(p == truth for p, (_, truth) in zip(predicted, pairs))
        scores[attribute] = {"n": len(pairs), "accuracy": round(right / len(pairs), 3)}
    return scores


def library_wordings(libraries: Sequence[str]) -> list[str]:
    """Every instruction wording of the named task libraries, sorted, each once."""
    return sorted({text for name in libraries for task in TaskLibrary.load(name).tasks for text in task.templates})


def fit_judge(
    tokenizer, embeddings: np.ndarray, tasks: dict[str, Sequence[str]] = JUDGE_TASKS,
    held_out: dict[str, Sequence[str]] = JUDGE_HELD_OUT,
) -> tuple[InstructionJudge, dict]:  # fmt: skip
    """The judge fitted on `tasks`' wordings, and a summary: wordings per class, its accuracy on
    `held_out`'s wordings per class, and the held-out wordings it gets wrong."""
    wordings = {label: library_wordings(tasks[label]) for label in ("sound", "other")}
    ids = {label: [instruction_ids(tokenizer, text) for text in texts] for label, texts in wordings.items()}
    judge = InstructionJudge.fit(embeddings, ids["sound"], ids["other"])
    summary: dict = {"tasks": {k: list(v) for k, v in tasks.items()},
                     "wordings": {label: len(texts) for label, texts in wordings.items()},
                     "held_out": {}, "held_out_mistakes": []}  # fmt: skip
    fitted = {*wordings["sound"], *wordings["other"]}
    for label, libraries in held_out.items():
        texts = [text for text in library_wordings(libraries) if text not in fitted]
        right = [judge.about_sound(instruction_ids(tokenizer, text)) == (label == "sound") for text in texts]
        summary["held_out"][label] = {"n": len(texts), "accuracy": round(sum(right) / max(len(texts), 1), 3)}
        summary["held_out_mistakes"] += [{"wording": t, "truth": label} for t, ok in zip(texts, right) if not ok]
    return judge, summary


def fit_tagger(
    checkpoint: str | Path,
    train: Sequence[str | Path],
    dev: Sequence[str | Path] = (),
    cache_dir: str | Path | None = None,
    limit: int | None = None,
    judge: bool = True,
) -> dict:
    """Fit the tagger of `checkpoint` (replacing any it had) on `train`'s labelled clips, with an
    instruction judge unless `judge` is False (then every prompt gets the line); returns (and
    writes beside it, `sound_tagger.stats.json`) what it learnt from and its dev accuracy."""
    from selfpowered.model.modeling import SpeechLM

    started = time.perf_counter()
    folder = Path(checkpoint)
    model = SpeechLM.from_pretrained(folder)
    if not model.processor.reads_transcript:
        raise SelfPoweredError(f"{folder}: sound tags follow Whisper's transcript; this LSM does not read one")
    hearing = model.new_hearing(cache_dir=cache_dir)
    clips, rejected = labelled_clips(train, limit)
    labels = [row for _, row in clips]
    pooled = pooled_clips(hearing, clips)
    tagger, counts = SoundTagger.fit(np.concatenate(pooled), labels, model.config.encoder_hidden_size)
    summary: dict = {"checkpoint": str(folder), "train": [str(p) for p in train], "train_clips": len(clips),
                     "values": counts, "attributes": sorted(tagger.classifiers),
                     "rejected": rejected}  # fmt: skip
    if judge:  # the LLM's own input embeddings: why the whole model is loaded
        table = model.llm.get_input_embeddings().weight.detach().float().numpy()
        tagger.judge, summary["judge"] = fit_judge(model.processor.tokenizer, table)
    model.processor.use_tagger(tagger)  # checks the width against the model's encoder (and the judge's vocabulary)
    if dev:
        dev_clips, dev_rejected = labelled_clips(dev, None)
        summary["rejected"] += dev_rejected
        summary["dev"] = [str(p) for p in dev]
        summary["dev_accuracy"] = dev_accuracy(tagger, pooled_clips(hearing, dev_clips), [row for _, row in dev_clips])
    tagger.save(folder)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_text(folder / STATS_FILE, json.dumps(summary, indent=1) + "\n")
    return summary
