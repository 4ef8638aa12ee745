"""Labelled acoustic transforms: each takes its parameters explicitly, so the label a clip gets is
what was done to it, true by construction (the paralinguistic corpus and the `paraling` eval).

- `add_noise`: white / pink / brown noise at a given SNR (dB, over the speech's own power);
- `reverberate`: a room impulse response with a given RT60: a direct path, then exponentially
  decaying noise that loses 60 dB in RT60 seconds (the statistical model behind Sabine's formula);
- `telephone`: the 300-3400 Hz band at 8 kHz, as a phone line carries it;
- `time_stretch`: tempo without pitch (librosa's phase vocoder), for recordings that cannot be
  re-spoken at another rate;
- `set_loudness` / `loudness_dbfs`: RMS level in dB full scale;
- `words_per_minute`: the measured pace of a spoken sentence (the pace label is this number).

Every random draw comes from the `numpy.random.Generator` passed in, so a corpus is reproducible.
"""

from __future__ import annotations

import numpy as np

from selfpowered.audio import SAMPLE_RATE, resample

NOISE_COLORS = ("white", "pink", "brown")
EDGE_SECONDS = 0.3  # the silence margins TTS output keeps (0.15 s each side), left out of the pace


def colored_noise(size: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise whose spectrum falls as 1/f^0 (white), 1/f (pink) or 1/f^2 (brown)."""
    if color not in NOISE_COLORS:
        raise ValueError(f"noise color {color!r}: one of {', '.join(NOISE_COLORS)}")
    white = rng.standard_normal(size)
    if color != "white":
        spectrum = np.fft.rfft(white)
        frequencies = np.fft.rfftfreq(size)
        frequencies[0] = frequencies[1] if size > 1 else 1.0
        spectrum /= frequencies ** (0.5 if color == "pink" else 1.0)
        white = np.fft.irfft(spectrum, n=size)
    return (white / max(float(np.sqrt(np.mean(white**2))), 1e-12)).astype(np.float32)


def add_noise(samples: np.ndarray, color: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`samples` plus `color` noise at `snr_db` dB below the speech's mean power."""
    power = float(np.mean(samples.astype(np.float64) ** 2))
    noise = colored_noise(samples.size, color, rng) * np.sqrt(power / 10 ** (snr_db / 10))
    return (samples + noise).astype(np.float32)


def room_impulse(rt60: float, rng: np.random.Generator, direct_ratio_db: float = 0.0) -> np.ndarray:
    """A room's impulse response: a unit direct path, then a diffuse tail of noise decaying by 60 dB
    in `rt60` seconds, its energy `direct_ratio_db` below the direct path's (0: equal)."""
    length = int(rt60 * SAMPLE_RATE)
    time = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-6.9078 * time / rt60)  # ln(1000): -60 dB at rt60
    tail[: int(0.005 * SAMPLE_RATE)] = 0.0  # first reflections arrive after a few milliseconds
    tail *= np.sqrt(10 ** (-direct_ratio_db / 10) / max(float(np.sum(tail**2)), 1e-12))
    response = tail
    response[0] = 1.0
    return response.astype(np.float32)


def reverberate(samples: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """`samples` heard in a room of reverberation time `rt60` seconds (same length: the tail that
    rings past the end is cut, as a recording would stop)."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(samples, room_impulse(rt60, rng))[: samples.size]
    peak = float(np.abs(wet).max())
    return (wet * (float(np.abs(samples).max()) / peak) if peak > 0 else wet).astype(np.float32)


def telephone(samples: np.ndarray) -> np.ndarray:
    """The 300-3400 Hz band, through 8 kHz and back (a narrowband phone line)."""
    from scipy.signal import butter, sosfiltfilt

    band = butter(6, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    narrow = resample(sosfiltfilt(band, samples).astype(np.float32), SAMPLE_RATE, 8_000)
    return resample(narrow, 8_000, SAMPLE_RATE)


def time_stretch(samples: np.ndarray, rate: float) -> np.ndarray:
    """Tempo times `rate` (> 1 faster), pitch kept."""
    import librosa

    return librosa.effects.time_stretch(samples.astype(np.float32), rate=rate).astype(np.float32)


def loudness_dbfs(samples: np.ndarray) -> float:
    return float(10 * np.log10(max(float(np.mean(samples.astype(np.float64) ** 2)), 1e-12)))


def set_loudness(samples: np.ndarray, dbfs: float, peak: float = 0.99) -> np.ndarray:
    """Scale to an RMS level of `dbfs`, or as close as the peak allows without clipping."""
    gain = 10 ** ((dbfs - loudness_dbfs(samples)) / 20)
    top = float(np.abs(samples).max()) * gain
    if top > peak:
        gain *= peak / top
    return (samples * gain).astype(np.float32)


def words_per_minute(text: str, seconds: float, edges: float = EDGE_SECONDS) -> float:
    """Words of `text` per minute of speech lasting `seconds` (its silent margins, `edges`, left out)."""
    return round(len(text.split()) / max(seconds - edges, 0.3) * 60, 1)
