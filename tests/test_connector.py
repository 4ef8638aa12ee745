from __future__ import annotations

import pytest
import torch

from selfpowered.config import ModelConfig
from selfpowered.model.configuration import LSMConfig
from selfpowered.model.connectors import build_connector, describe_connectors, load_connectors, resolve_connector
from selfpowered.model.connectors.window_qformer import window_frames

SMALL = {
    "window_qformer": {"hidden_size": 32, "heads": 4, "ffn_size": 64, "dropout": 0.0},
    "utterance_qformer": {"hidden_size": 32, "heads": 4, "ffn_size": 64, "dropout": 0.0, "queries": 4},
    "stack_mlp": {"hidden_size": 64, "dropout": 0.0},
    "none": {},
}


def _config(name: str = "window_qformer", speech_tokens: str = "connector", **settings) -> LSMConfig:
    connector = {"name": name, **SMALL[name], **settings}
    return LSMConfig(
        encoder_config={"d_model": 32}, llm_config={"hidden_size": 48}, connector=connector, speech_tokens=speech_tokens
    )


def _connector(name: str = "window_qformer", **settings):
    return build_connector(_config(name, **settings))


def test_window_is_one_third_second_at_whisper_frame_rate():
    config = _config()
    assert window_frames(config, config.connector_options) == 17  # 50 Hz * 1/3 s, rounded


def test_every_connector_registers_itself_with_its_settings():
    assert sorted(load_connectors()) == ["none", "stack_mlp", "utterance_qformer", "window_qformer"]
    listing = describe_connectors()
    assert "#   utterance_qformer: " in listing and "#     queries: 8  # slots per utterance" in listing


def test_settings_nest_under_the_connector_and_config_json_keeps_them_all():
    config = _config("utterance_qformer", speech_tokens="transcript", queries=6)
    assert config.connector == {"name": "utterance_qformer", **SMALL["utterance_qformer"], "queries": 6, "layers": 2}
    assert config.connector_options.queries == 6
    again = LSMConfig.from_dict(config.to_dict())
    assert again.connector == config.connector


def test_the_flat_layout_of_older_checkpoints_still_loads():
    """config.json before 2026-12-07 kept every connector's fields flat beside `connector: NAME`."""
    old = dict(connector="utterance_qformer", speech_tokens="transcript", utterance_queries=8, qformer_layers=2,
               qformer_hidden_size=256, qformer_heads=4, qformer_ffn_size=1024, connector_dropout=0.1,
               window_seconds=1 / 3, queries_per_window=1, stack_factor=4, tokens_per_stack=1,
               mlp_hidden_size=1024)  # fmt: skip
    config = LSMConfig(encoder_config={"d_model": 32}, llm_config={"hidden_size": 48}, **old)
    assert config.connector == {
        "name": "utterance_qformer", "queries": 8, "layers": 2, "hidden_size": 256, "heads": 4, "ffn_size": 1024,
        "dropout": 0.1,
    }  # fmt: skip


def test_bad_connector_settings_name_the_key():
    with pytest.raises(ValueError, match=r"connector.queries: Input should be greater than or equal to 1"):
        _config("utterance_qformer", speech_tokens="transcript", queries=0)
    with pytest.raises(ValueError, match=r"connector.stack_factr: Extra inputs are not permitted"):
        _config("stack_mlp", stack_factr=2)
    with pytest.raises(ValueError, match="nothing to hear unless speech_tokens: transcript"):
        resolve_connector(ModelConfig(connector="none"))


@pytest.mark.parametrize("seconds", [0.2, 1.0, 3.0, 10.0, 30.0])
def test_qformer_token_count_proportional_to_duration(seconds):
    connector = _connector().eval()
    frames = int(seconds * 50)
    out, lengths = connector(torch.randn(1, frames, 32), torch.tensor([frames]))
    assert int(lengths[0]) == -(-frames // 17)
    assert out.shape == (1, int(lengths[0]), 48)
    assert abs(int(lengths[0]) - seconds * 3) <= 1


def test_more_queries_per_window_multiplies_tokens():
    connector = _connector(queries_per_window=3).eval()
    _, lengths = connector(torch.randn(1, 170, 32), torch.tensor([170]))
    assert lengths.tolist() == [30]


@pytest.mark.parametrize("name", ["window_qformer", "stack_mlp", "utterance_qformer"])
def test_batch_equals_one_by_one(name):
    connector = _connector(name).eval()
    lengths = torch.tensor([40, 151, 7])
    states = torch.randn(3, 151, 32)
    batch, token_lengths = connector(states, lengths)
    for i in range(3):
        n = int(lengths[i])
        alone, alone_len = connector(states[i : i + 1, :n], lengths[i : i + 1])
        assert alone_len.tolist() == [int(token_lengths[i])]
        torch.testing.assert_close(batch[i, : token_lengths[i]], alone[0], atol=1e-5, rtol=1e-4)


def test_padding_frames_do_not_change_real_tokens():
    connector = _connector().eval()
    states = torch.randn(1, 40, 32)
    out_a, _ = connector(states, torch.tensor([40]))
    noisy = torch.cat([states, 100 * torch.randn(1, 20, 32)], dim=1)
    out_b, lengths = connector(noisy, torch.tensor([40]))
    torch.testing.assert_close(out_a[0], out_b[0, : lengths[0]], atol=1e-5, rtol=1e-4)


def test_stack_mlp_counts():
    connector = _connector("stack_mlp", stack_factor=4)
    out, lengths = connector(torch.randn(2, 10, 32), torch.tensor([10, 5]))
    assert lengths.tolist() == [3, 2] and out.shape == (2, 3, 48)


def test_tokens_per_stack_spreads_each_stack_over_consecutive_tokens():
    """tokens_per_stack 2: each stack's MLP output is split into two tokens, in order, and the
    count doubles; row 0's first two tokens are exactly the halves of its first stack's output."""
    connector = _connector("stack_mlp", stack_factor=1, tokens_per_stack=2).eval()
    states = torch.randn(2, 5, 32)
    out, lengths = connector(states, torch.tensor([5, 3]))
    assert lengths.tolist() == [10, 6] and out.shape == (2, 10, 48)
    first = connector.mlp(connector.norm(states[0, :1]))[0]
    torch.testing.assert_close(out[0, 0], first[:48])
    torch.testing.assert_close(out[0, 1], first[48:])


def test_config_rejects_unknown_connector():
    with pytest.raises(ValueError, match="connector"):
        resolve_connector(ModelConfig(connector="perceiver"))
