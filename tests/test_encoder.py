from __future__ import annotations

import torch
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from selfpowered.model.encoder import SpeechEncoder, encoder_output_length
from tiny import tiny_whisper_config


def _encoder() -> SpeechEncoder:
    return SpeechEncoder(WhisperEncoder(tiny_whisper_config()).eval())


def test_full_30s_input_matches_transformers_whisper_encoder():
    encoder = _encoder()
    mel = torch.randn(80, 3000)
    states, lengths = encoder([[mel]])
    reference = encoder.whisper(mel[None]).last_hidden_state
    assert lengths.tolist() == [1500]
    torch.testing.assert_close(states, reference, atol=1e-5, rtol=1e-5)


def test_real_frames_only_output_length():
    encoder = _encoder()
    for frames in (1, 2, 77, 200, 2999):
        states, lengths = encoder([[torch.randn(80, frames)]])
        assert int(lengths[0]) == encoder_output_length(frames) == (frames + 1) // 2
        assert states.shape[1] == lengths[0]


def test_batch_equals_one_by_one():
    encoder = _encoder()
    mels = [torch.randn(80, n) for n in (123, 480, 301)]
    batch, lengths = encoder([[m] for m in mels])
    for i, mel in enumerate(mels):
        alone, _ = encoder([[mel]])
        torch.testing.assert_close(batch[i, : lengths[i]], alone[0], atol=1e-5, rtol=1e-4)
        assert batch[i, lengths[i] :].abs().sum() == 0  # padding stays zero


def test_long_audio_chunks_are_concatenated_not_truncated():
    encoder = _encoder()
    chunks = [torch.randn(80, 3000), torch.randn(80, 3000), torch.randn(80, 500)]
    states, lengths = encoder([chunks])
    assert lengths.tolist() == [1500 + 1500 + 250]
    second, _ = encoder([[chunks[1]]])
    torch.testing.assert_close(states[0, 1500:3000], second[0], atol=1e-5, rtol=1e-4)
