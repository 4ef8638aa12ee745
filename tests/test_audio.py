from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from transformers import WhisperFeatureExtractor

from selfpowered.audio import LogMelExtractor, chunk_samples, load_audio
from selfpowered.errors import AudioError
from tests.helpers import tone


def test_load_resamples_and_downmixes(tmp_path):
    stereo = np.stack([tone(1.0, rate=44_100), tone(1.0, rate=44_100)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 44_100)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size - 16_000) <= 2


def test_flac_round_trip(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, tone(0.5), 16_000)
    assert load_audio(path).size == 8_000


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b"this is not audio at all" * 10), "cannot decode"),
        (lambda p: sf.write(p, np.zeros(0, dtype=np.float32), 16_000), "empty"),
        (lambda p: sf.write(p, np.full(1600, np.nan, dtype=np.float32), 16_000, subtype="FLOAT"), "NaN"),
        (lambda p: sf.write(p, np.zeros(100, dtype=np.float32), 16_000), "shorter than"),
    ],
)
def test_bad_audio_gets_a_specific_error(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_chunking_keeps_every_sample_of_long_audio():
    samples = np.zeros(16_000 * 65, dtype=np.float32)
    chunks = chunk_samples(samples)
    assert [c.size for c in chunks] == [480_000, 480_000, 80_000]


def test_mel_features_are_real_frames_only_and_match_whisper():
    extractor = WhisperFeatureExtractor()
    samples = tone(2.5)
    (ours,) = LogMelExtractor(extractor)(samples)
    assert ours.shape == (80, 250)
    padded = extractor(samples, sampling_rate=16_000, return_tensors="np")["input_features"][0]
    # Whisper pads to 30 s; over the real frames (bar the STFT edge frame) the values agree.
    np.testing.assert_allclose(ours[:, :-1], padded[:, :249], atol=1e-4)


def test_long_audio_yields_one_mel_chunk_per_30_seconds():
    chunks = LogMelExtractor(WhisperFeatureExtractor())(np.tile(tone(1.0), 65))
    assert [c.shape[1] for c in chunks] == [3000, 3000, 500]
