"""Scoring transcripts of a manifest sample: is a corpus intelligible, does a model transcribe it?"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from selfpowered.assets import DEFAULT_ENCODER
from selfpowered.config import LimitsConfig
from selfpowered.corpus.manifest import ManifestRow, read_manifest
from selfpowered.text.metrics import word_error_rate


def sample_rows(manifest: str | Path, sample: int, seed: int = 0) -> list[ManifestRow]:
    """A seeded random sample of a manifest's rows (all of them when `sample` >= its size)."""
    rows = read_manifest(manifest, LimitsConfig(check_audio=False)).rows
    return random.Random(seed).sample(rows, min(sample, len(rows)))


def score_transcripts(rows: Sequence[ManifestRow], hypotheses: Sequence[str]) -> dict:
    """Corpus WER overall and per speaker (Whisper-normalised), with a few examples."""
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_speaker[row.speaker or "?"].append(index)
    return {
        "utterances": len(rows),
        "wer": round(word_error_rate([row.text for row in rows], hypotheses).wer, 4),
        "wer_per_speaker": {
            speaker: round(word_error_rate([rows[i].text for i in idx], [hypotheses[i] for i in idx]).wer, 4)
            for speaker, idx in sorted(by_speaker.items())
        },
        "examples": [{"ref": rows[i].text, "hyp": hypotheses[i]} for i in range(min(5, len(rows)))],
    }


def intelligibility(manifest: str | Path, sample: int = 200, seed: int = 0, asr_model: str = DEFAULT_ENCODER) -> dict:
    """WER of Whisper on a seeded random sample of the manifest, overall and per speaker."""
    from selfpowered.model.hearing import WhisperHearing

    manifest = Path(manifest)
    chosen = sample_rows(manifest, sample, seed)
    hypotheses = WhisperHearing(asr_model).transcribe([row.audio_path(manifest.parent) for row in chosen])
    return {"manifest": str(manifest), "asr_model": asr_model, **score_transcripts(chosen, hypotheses)}
