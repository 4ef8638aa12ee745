from __future__ import annotations

import pytest
import torch

from selfpowered.model.configuration import LSMConfig
from selfpowered.model.connector import StackMLP, WindowQFormer, build_connector


def _config(**kw) -> LSMConfig:
    base = dict(
        encoder_config={"d_model": 32},
        llm_config={"hidden_size": 48},
        qformer_hidden_size=32,
        qformer_heads=4,
        qformer_ffn_size=64,
        mlp_hidden_size=64,
        connector_dropout=0.0,
    )
    base.update(kw)
    return LSMConfig(**base)


def test_window_is_one_third_second_at_whisper_frame_rate():
    assert _config().window_frames == 17  # 50 Hz * 1/3 s, rounded


@pytest.mark.parametrize("seconds", [0.2, 1.0, 3.0, 10.0, 30.0])
def test_qformer_token_count_proportional_to_duration(seconds):
    connector = WindowQFormer(_config()).eval()
    frames = int(seconds * 50)
    out, lengths = connector(torch.randn(1, frames, 32), torch.tensor([frames]))
    assert int(lengths[0]) == -(-frames // 17)
    assert out.shape == (1, int(lengths[0]), 48)
    assert abs(int(lengths[0]) - seconds * 3) <= 1


def test_more_queries_per_window_multiplies_tokens():
    connector = WindowQFormer(_config(queries_per_window=3)).eval()
    _, lengths = connector(torch.randn(1, 170, 32), torch.tensor([170]))
    assert lengths.tolist() == [30]


@pytest.mark.parametrize("name", ["window_qformer", "stack_mlp"])
def test_batch_equals_one_by_one(name):
    connector = build_connector(_config(connector=name)).eval()
    lengths = torch.tensor([40, 151, 7])
    states = torch.randn(3, 151, 32)
    batch, token_lengths = connector(states, lengths)
    for i in range(3):
        n = int(lengths[i])
        alone, alone_len = connector(states[i : i + 1, :n], lengths[i : i + 1])
        assert alone_len.tolist() == [int(token_lengths[i])]
        torch.testing.assert_close(batch[i, : token_lengths[i]], alone[0], atol=1e-5, rtol=1e-4)


def test_padding_frames_do_not_change_real_tokens():
    connector = WindowQFormer(_config()).eval()
    states = torch.randn(1, 40, 32)
    out_a, _ = connector(states, torch.tensor([40]))
    noisy = torch.cat([states, 100 * torch.randn(1, 20, 32)], dim=1)
    out_b, lengths = connector(noisy, torch.tensor([40]))
    torch.testing.assert_close(out_a[0], out_b[0, : lengths[0]], atol=1e-5, rtol=1e-4)


def test_stack_mlp_counts():
    connector = StackMLP(_config(connector="stack_mlp", stack_factor=4))
    out, lengths = connector(torch.randn(2, 10, 32), torch.tensor([10, 5]))
    assert lengths.tolist() == [3, 2] and out.shape == (2, 3, 48)


def test_tokens_per_stack_spreads_each_stack_over_consecutive_tokens():
    """tokens_per_stack 2: each stack's MLP output is split into two tokens, in order, and the
    count doubles; row 0's first two tokens are exactly the halves of its first stack's output."""
    config = _config(connector="stack_mlp", stack_factor=1, tokens_per_stack=2)
    connector = StackMLP(config).eval()
    states = torch.randn(2, 5, 32)
    out, lengths = connector(states, torch.tensor([5, 3]))
    assert lengths.tolist() == [10, 6] and out.shape == (2, 10, 48)
    first = connector.mlp(connector.norm(states[0, :1]))[0]
    torch.testing.assert_close(out[0, 0], first[:48])
    torch.testing.assert_close(out[0, 1], first[48:])


def test_config_rejects_unknown_connector():
    with pytest.raises(ValueError, match="connector"):
        _config(connector="perceiver")
