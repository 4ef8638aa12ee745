"""Audio in: decode, resample to 16 kHz, down-mix, validate; Whisper log-mel features.

soundfile + soxr, not torchaudio: torchaudio pins its own torch build. Whisper normalises each
30 s window on its own, so long audio is cut into 30 s chunks *before* feature extraction and each
chunk is encoded separately (never silently truncated to 30 s as the official code does).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from selfpowered.errors import AudioError

SAMPLE_RATE = 16_000
CHUNK_SECONDS = 30.0
HOP_LENGTH = 160  # Whisper: 10 ms mel hop at 16 kHz
MIN_SECONDS = 0.05

AudioInput = str | os.PathLike | np.ndarray


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality resampling with soxr (float32 in, float32 out)."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels: soundfile gives (frames, channels) for multi-channel files."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def validate_samples(samples: np.ndarray, source: str = "audio") -> np.ndarray:
    """Reject audio that would silently poison features: empty, too short, NaN/inf, not 1-D."""
    if samples.ndim != 1:
        raise AudioError(f"{source}: expected mono samples (1-D), got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError(f"{source}: audio is empty (0 samples)")
    if samples.size < MIN_SECONDS * SAMPLE_RATE:
        raise AudioError(f"{source}: audio is {samples.size / SAMPLE_RATE:.3f} s long, shorter than {MIN_SECONDS} s")
    if not np.isfinite(samples).all():
        raise AudioError(f"{source}: audio holds NaN or infinite samples")
    return samples


def load_audio(path: str | os.PathLike, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read any soundfile-supported file (wav, flac, ogg, mp3...) as float32 mono at 16 kHz."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: audio file not found")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from exc
    samples = to_mono(np.asarray(samples))
    if samples.size == 0:
        raise AudioError(f"{path}: audio is empty (0 samples)")
    return validate_samples(resample(samples, rate, target_rate), str(path))


def as_samples(audio: AudioInput) -> np.ndarray:
    """Accept a path or an array of 16 kHz mono samples; return validated float32 samples."""
    if isinstance(audio, np.ndarray):
        return validate_samples(to_mono(audio.astype(np.float32, copy=False)), "audio array")
    return load_audio(audio)


def chunk_samples(samples: np.ndarray, chunk_seconds: float = CHUNK_SECONDS) -> list[np.ndarray]:
    """Split into consecutive chunks of at most `chunk_seconds` (Whisper's window)."""
    size = int(chunk_seconds * SAMPLE_RATE)
    chunks = [samples[start : start + size] for start in range(0, samples.size, size)]
    # A last sliver shorter than two mel hops (20 ms) cannot make an encoder frame: it is dropped.
    if len(chunks) > 1 and chunks[-1].size < HOP_LENGTH * 2:
        chunks.pop()
    return chunks


class LogMelExtractor:
    """Whisper log-mel features over the real samples only (no padding to 30 s).

    Wraps transformers' `WhisperFeatureExtractor` so the filterbank and normalisation are exactly
    Whisper's; returns one (n_mels, frames) array per 30 s chunk.
    """

    def __init__(self, feature_extractor) -> None:
        self.feature_extractor = feature_extractor

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> LogMelExtractor:
        from transformers import WhisperFeatureExtractor

        return cls(WhisperFeatureExtractor.from_pretrained(str(path)))

    @property
    def num_mel_bins(self) -> int:
        return int(self.feature_extractor.feature_size)

    def __call__(self, samples: np.ndarray) -> list[np.ndarray]:
        features = []
        for chunk in chunk_samples(samples):
            out = self.feature_extractor(
                chunk,
                sampling_rate=SAMPLE_RATE,
                padding="longest",
                truncation=False,
                return_tensors="np",
            )
            features.append(out["input_features"][0].astype(np.float32))
        return features
