"""Voice and channel effects for synthetic speech, through maintained libraries (audiomentations,
pyroomacoustics under its RoomSimulator, soxr), each drawn from a seed so a corpus is reproducible.

A handful of TTS voices is a narrow slice of human speech; Kaldi-style recipes widen what a model
hears with speed perturbation, and noise and reverberation stand in for rooms and microphones.
Training effects (`TRAIN_EFFECTS`) and the test-only transforms (`TEST_EFFECTS`) never overlap, so
an out-of-domain set can use "a voice transform never used in training":

- `speed`: Kaldi speed perturbation, 0.9x or 1.1x (resampling: tempo and pitch move together);
- `pitch`: pitch shift within +-3 semitones (tempo kept);
- `noise`: coloured noise (white to brown) at 10-30 dB SNR;
- `reverb`: a simulated shoebox room (pyroomacoustics, image-source method);
- test only: `phone` (300-3400 Hz band, 8 kHz, light noise) and `deep` (-5 semitones, beyond the
  training range).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from selfpowered.audio import SAMPLE_RATE, resample
from selfpowered.errors import SelfPoweredError

TRAIN_EFFECTS = ("speed", "pitch", "noise", "reverb")
TEST_EFFECTS = ("phone", "deep")


def _speed(samples: np.ndarray, rng: random.Random) -> np.ndarray:
    factor = rng.choice((0.9, 1.1))
    # played back at 16 kHz after resampling from 16 kHz x factor: `factor` times faster
    return resample(samples, round(SAMPLE_RATE / factor), SAMPLE_RATE)


def _pitch(samples: np.ndarray, rng: random.Random, low: float = -3.0, high: float = 3.0) -> np.ndarray:
    from audiomentations import PitchShift

    return PitchShift(min_semitones=low, max_semitones=high, p=1.0)(samples=samples, sample_rate=SAMPLE_RATE)


def _noise(samples: np.ndarray, rng: random.Random) -> np.ndarray:
    from audiomentations import AddColorNoise

    return AddColorNoise(min_snr_db=10.0, max_snr_db=30.0, p=1.0)(samples=samples, sample_rate=SAMPLE_RATE)


def _reverb(samples: np.ndarray, rng: random.Random) -> np.ndarray:
    from audiomentations import RoomSimulator

    # the image-source method alone: pyroomacoustics' ray tracer draws from its own unseeded generator
    room = RoomSimulator(
        min_absorption_value=0.1, max_absorption_value=0.4, leave_length_unchanged=True, use_ray_tracing=False, p=1.0
    )
    return room(samples=samples, sample_rate=SAMPLE_RATE)


def _phone(samples: np.ndarray, rng: random.Random) -> np.ndarray:
    from audiomentations import AddGaussianSNR, BandPassFilter

    band = BandPassFilter(
        min_center_freq=1800.0,
        max_center_freq=1900.0,
        min_bandwidth_fraction=1.6,
        max_bandwidth_fraction=1.7,
        p=1.0,
    )
    narrow = resample(band(samples=samples, sample_rate=SAMPLE_RATE), SAMPLE_RATE, 8_000)
    return AddGaussianSNR(min_snr_db=25.0, max_snr_db=35.0, p=1.0)(
        samples=resample(narrow, 8_000, SAMPLE_RATE), sample_rate=SAMPLE_RATE
    )


def _deep(samples: np.ndarray, rng: random.Random) -> np.ndarray:
    return _pitch(samples, rng, -5.0, -5.0)


EFFECTS: dict[str, Callable[[np.ndarray, random.Random], np.ndarray]] = {
    "speed": _speed,
    "pitch": _pitch,
    "noise": _noise,
    "reverb": _reverb,
    "phone": _phone,
    "deep": _deep,
}


def apply_effects(samples: np.ndarray, effects: str, seed: int) -> np.ndarray:
    """Apply `effects` ("", "noise", "speed+reverb" ...) in order, drawing every random parameter
    from `seed`; the result is scaled back to a 0.95 peak when an effect made it louder."""
    if not effects:
        return samples
    # audiomentations draws from numpy's and Python's global generators: seed both, then restore
    state_np, state_py = np.random.get_state(), random.getstate()
    rng = random.Random(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        for name in effects.split("+"):
            if name not in EFFECTS:
                raise SelfPoweredError(f"unknown audio effect {name!r}; known: {', '.join(EFFECTS)}")
            samples = EFFECTS[name](samples.astype(np.float32), rng)
    finally:
        np.random.set_state(state_np)
        random.setstate(state_py)
    peak = float(np.abs(samples).max())
    return (samples * (0.95 / peak) if peak > 0.95 else samples).astype(np.float32)
