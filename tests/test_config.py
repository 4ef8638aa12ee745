from __future__ import annotations

from pathlib import Path

import pytest

from selfpowered.config import ChatConfig, InitConfig, ModelConfig, dump_config, load_config
from selfpowered.errors import ConfigError

CONFIGS = Path(__file__).parent.parent / "configs"


def test_shipped_model_config_is_the_default():
    config = load_config(InitConfig, CONFIGS / "model.yaml", {"output": "x"})
    assert config.model.model_dump(exclude={"window_seconds"}) == ModelConfig().model_dump(exclude={"window_seconds"})
    assert config.model.window_seconds == pytest.approx(1 / 3)


def test_flags_override_file_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: ckpt\ngeneration:\n  max_new_tokens: 7\n  batch_size: 2\n")
    config = load_config(ChatConfig, path, {"generation.max_new_tokens": 9, "device": None})
    assert config.generation.max_new_tokens == 9 and config.generation.batch_size == 2
    assert config.device == "cpu"  # None means "flag not given"


def test_yaml_echo_round_trips(tmp_path):
    config = load_config(InitConfig, None, {"output": "out", "model.connector": "stack_mlp"})
    path = tmp_path / "echo.yaml"
    path.write_text(dump_config(config))
    assert load_config(InitConfig, path) == config


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: [unclosed", "invalid YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("model: ckpt\ngeneraton: {}\n", "generaton: Extra inputs are not permitted"),
        ("model: ckpt\ngeneration:\n  max_new_tokens: -1\n", "generation.max_new_tokens: Input should be greater"),
        ("audio: [a.wav]\n", "model: Field required"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(ChatConfig, path)
    assert str(info.value).startswith(str(path))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(ChatConfig, tmp_path / "none.yaml")


@pytest.mark.parametrize("name", ["demo.yaml", "demo-vanilla.yaml", "paper.yaml"])
def test_shipped_training_configs_validate(name):
    from selfpowered.config import TrainConfig

    config = load_config(TrainConfig, CONFIGS / name)
    assert config.data.train and config.optim.token_budget > 0
    if name == "paper.yaml":
        assert (config.optim.lr_llm, config.optim.weight_decay, config.optim.warmup_steps) == (2e-5, 0.05, 100)
        assert config.precision == "bf16" and config.optim.max_batch * config.optim.grad_accum * 4 == 384
