"""`selfpowered tag`: fit a checkpoint's sound tagger (model/sound_tags.py) on a labelled corpus.

Whisper hears every clip once (through the model's own hearing settings, so a training run's hearing
cache is reused), each clip's states are pooled as they arrive, and one linear classifier per
attribute is fitted on the labels the corpus records (true by construction). With `dev`, each
attribute is scored on the dev clips made for it (the paraling dev pairs: the same sentence under
both values, held-out voices) - the number to choose by; the tagger then goes into the checkpoint,
where the processor reads it, and every later prompt of that model says how its clip sounds.
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
from selfpowered.model.sound_tags import SoundTagger, pooled_states
from selfpowered.text.paraling import value_of

STATS_FILE = "sound_tagger.stats.json"


def _labelled(manifests: Sequence[str | Path], limit: int | None) -> tuple[list[tuple[Path, dict]], list[str]]:
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


def _pooled(hearing, clips: list[tuple[Path, dict]]) -> list[np.ndarray]:
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


def fit_tagger(
    checkpoint: str | Path,
    train: Sequence[str | Path],
    dev: Sequence[str | Path] = (),
    cache_dir: str | Path | None = None,
    limit: int | None = None,
) -> dict:
    """Fit the tagger of `checkpoint` (replacing any it had) on `train`'s labelled clips; returns
    (and writes beside it, `sound_tagger.stats.json`) what it learnt from and its dev accuracy."""
    from selfpowered.model.modeling import SpeechLM

    started = time.perf_counter()
    folder = Path(checkpoint)
    model = SpeechLM.from_pretrained(folder)
    if not model.processor.reads_transcript:
        raise SelfPoweredError(f"{folder}: sound tags follow Whisper's transcript; this LSM does not read one")
    hearing = model.new_hearing(cache_dir=cache_dir)
    clips, rejected = _labelled(train, limit)
    labels = [row for _, row in clips]
    pooled = _pooled(hearing, clips)
    tagger, counts = SoundTagger.fit(np.concatenate(pooled), labels, model.config.encoder_hidden_size)
    model.processor.use_tagger(tagger)  # checks the width against the model's encoder
    summary: dict = {"checkpoint": str(folder), "train": [str(p) for p in train], "train_clips": len(clips),
                     "values": counts, "attributes": sorted(tagger.classifiers),
                     "rejected": rejected}  # fmt: skip
    if dev:
        dev_clips, dev_rejected = _labelled(dev, None)
        summary["rejected"] += dev_rejected
        summary["dev"] = [str(p) for p in dev]
        summary["dev_accuracy"] = dev_accuracy(tagger, _pooled(hearing, dev_clips), [row for _, row in dev_clips])
    tagger.save(folder)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_text(folder / STATS_FILE, json.dumps(summary, indent=1) + "\n")
    return summary
