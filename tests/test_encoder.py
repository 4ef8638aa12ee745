from __future__ import annotations

import torch
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from selfpowered.model.encoder import SpeechEncoder, encoder_frames, encoder_output_length, pack_chunks
from tests.tiny import tiny_whisper_config


def _encoder() -> SpeechEncoder:
    return SpeechEncoder(WhisperEncoder(tiny_whisper_config()).eval())


def _encode(encoder: SpeechEncoder, per_item: list[list[torch.Tensor]]):
    return encoder(**pack_chunks(per_item))


def test_full_30s_input_matches_transformers_whisper_encoder():
    encoder = _encoder()
    mel = torch.randn(80, 3000)
    states, lengths = _encode(encoder, [[mel]])
    reference = encoder.whisper(mel[None]).last_hidden_state
    assert lengths.tolist() == [1500]
    torch.testing.assert_close(states, reference, atol=1e-5, rtol=1e-5)


def test_real_frames_only_output_length():
    encoder = _encoder()
    for frames in (1, 2, 77, 200, 2999):
        states, lengths = _encode(encoder, [[torch.randn(80, frames)]])
        assert int(lengths[0]) == encoder_output_length(frames) == (frames + 1) // 2
        assert states.shape[1] == lengths[0]


def test_batch_equals_one_by_one():
    encoder = _encoder()
    mels = [torch.randn(80, n) for n in (123, 480, 301)]
    batch, lengths = _encode(encoder, [[m] for m in mels])
    for i, mel in enumerate(mels):
        alone, _ = _encode(encoder, [[mel]])
        torch.testing.assert_close(batch[i, : lengths[i]], alone[0], atol=1e-5, rtol=1e-4)
        assert batch[i, lengths[i] :].abs().sum() == 0  # padding stays zero


def test_long_audio_chunks_are_concatenated_not_truncated():
    encoder = _encoder()
    chunks = [torch.randn(80, 3000), torch.randn(80, 3000), torch.randn(80, 500)]
    states, lengths = _encode(encoder, [chunks])
    assert lengths.tolist() == [1500 + 1500 + 250]
    second, _ = _encode(encoder, [[chunks[1]]])
    torch.testing.assert_close(states[0, 1500:3000], second[0], atol=1e-5, rtol=1e-4)


def test_encoder_frames_add_up_over_chunks_and_text_rows_have_none():
    packed = pack_chunks([[torch.randn(80, 3000), torch.randn(80, 501)], [], [torch.randn(80, 20)]])
    assert packed["mel"].shape == (3, 80, 3000) and packed["mel_chunks"].tolist() == [2, 0, 1]
    assert encoder_frames(packed["mel_frames"], packed["mel_chunks"]) == [1500 + 251, 0, 10]
    states, lengths = _encoder()(**packed)
    assert lengths.tolist() == [1751, 0, 10] and states[1].abs().sum() == 0
