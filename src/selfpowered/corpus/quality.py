"""Is a corpus real, intelligible speech? Transcribe a sample with Whisper and score it."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from selfpowered.corpus.manifest import ValidationLimits, read_manifest
from selfpowered.evaluate.metrics import word_error_rate


def intelligibility(manifest: str | Path, sample: int = 200, seed: int = 0, asr_model: str = "whisper-tiny.en") -> dict:
    """WER of Whisper on a seeded random sample of the manifest, overall and per speaker."""
    from selfpowered.asr import WhisperTranscriber

    manifest = Path(manifest)
    rows = read_manifest(manifest, ValidationLimits(check_audio=False)).rows
    chosen = random.Random(seed).sample(rows, min(sample, len(rows)))
    hypotheses = WhisperTranscriber(asr_model).transcribe([row.audio_path(manifest.parent) for row in chosen])
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(chosen):
        by_speaker[row.speaker or "?"].append(index)
    per_speaker = {
        speaker: round(word_error_rate([chosen[i].text for i in idx], [hypotheses[i] for i in idx]).wer, 4)
        for speaker, idx in sorted(by_speaker.items())
    }
    overall = word_error_rate([row.text for row in chosen], hypotheses)
    return {
        "manifest": str(manifest),
        "asr_model": asr_model,
        "utterances": len(chosen),
        "wer": round(overall.wer, 4),
        "wer_per_speaker": per_speaker,
        "examples": [{"ref": chosen[i].text, "hyp": hypotheses[i]} for i in range(min(3, len(chosen)))],
    }
