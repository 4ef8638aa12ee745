from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from selfpowered.config import (
    STAGES,
    ChatConfig,
    EvalConfig,
    InitConfig,
    ModelConfig,
    describe_config,
    dump_config,
    load_config,
    parse_overrides,
)
from selfpowered.errors import ConfigError

CONFIGS = Path(__file__).parent.parent / "configs"


def test_checkpoint_config_takes_its_fields_and_limits_from_model_config():
    from selfpowered.model import LSMConfig

    lsm = LSMConfig()
    for name in ModelConfig.architecture_fields():
        if name == "connector":  # the name and every setting of the connector's own model
            assert lsm.connector["name"] == ModelConfig().connector.name == "window_qformer"
            assert lsm.connector_options == type(lsm.connector_options)()
            continue
        assert getattr(lsm, name) == getattr(ModelConfig(), name), name
    with pytest.raises(ValueError, match="lora_r"):
        LSMConfig(lora_r=0)  # the same limit as in a YAML recipe


def test_set_overrides_parse_yaml_values_and_win_over_file_and_flags(tmp_path):
    overrides = parse_overrides(["generation.max_new_tokens=5", "audio=[a.wav, b.wav]", "device=cuda:1"])
    assert overrides == {"generation.max_new_tokens": 5, "audio": ["a.wav", "b.wav"], "device": "cuda:1"}
    path = tmp_path / "c.yaml"
    path.write_text("model: ckpt\ngeneration:\n  max_new_tokens: 7\n")
    config = load_config(ChatConfig, path, {"generation.max_new_tokens": 9}, overrides)
    assert config.generation.max_new_tokens == 5 and config.audio == ["a.wav", "b.wav"]
    assert load_config(ChatConfig, path, {}, {"instruction": None}).instruction is None  # --set key=null applies
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["max_new_tokens"])
    with pytest.raises(ConfigError, match="generaton: Extra inputs"):
        load_config(ChatConfig, path, {}, parse_overrides(["generaton.max_new_tokens=3"]))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_config_show_lists_every_key_with_its_default(stage):
    data = yaml.safe_load(describe_config(stage))
    cls = STAGES[stage]
    assert set(data) == set(cls.model_fields)
    for key, field in cls.model_fields.items():
        if field.is_required():  # shown empty (or as its section), commented "required"
            assert data[key] is None or set(data[key]) == set(field.annotation.model_fields)
            continue
        default = field.get_default(call_default_factory=True)
        expected = default.model_dump(mode="json") if hasattr(default, "model_dump") else default
        assert data[key] == pytest.approx(expected) if isinstance(expected, float) else data[key] == expected, key


def test_eval_model_and_suite_lists_accept_comma_joined_flags():
    config = EvalConfig(data="d", models=["a=x,b=y", "c"], suites="asr, instruct", baselines=["none"])
    assert config.models == ["a=x", "b=y", "c"] and config.suites == ["asr", "instruct"] and config.baselines == []


def test_eval_refuses_decoding_it_would_not_apply():
    with pytest.raises(ValueError, match="repetition_penalty"):
        EvalConfig(data="d", generation={"repetition_penalty": 1.2})
    assert EvalConfig(data="d", generation={"no_repeat_ngram_size": 4}).generation.no_repeat_ngram_size == 4


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


@pytest.mark.parametrize(
    "name", ["demo.yaml", "demo-vanilla.yaml", "paper.yaml", "open-vanilla.yaml", "open-selfpowered.yaml"]
)
def test_shipped_training_configs_validate(name):
    from selfpowered.config import TrainConfig

    config = load_config(TrainConfig, CONFIGS / name)
    assert config.data.train and config.optim.token_budget > 0
    if name == "paper.yaml":
        assert (config.optim.lr_llm, config.optim.weight_decay, config.optim.warmup_steps) == (2e-5, 0.05, 100)
        assert config.precision == "bf16" and config.optim.max_batch * config.optim.grad_accum * 4 == 384


def test_open_recipe_configs_are_the_measured_recipe():
    """configs/open-*.yaml = bench/sound.sh's init-lora -> V / S: a transcript LSM with 8 utterance
    Q-Former slots, both arms from one init and one shared optimiser (open-train.yaml), the
    self-powered arm = the vanilla arm's ASR pairs + the LLM's own answers (content and sound)."""
    from selfpowered.config import InitConfig, TrainConfig

    init = load_config(InitConfig, CONFIGS / "open-init.yaml")
    model = init.model
    assert (model.speech_tokens, model.connector.name, model.connector.settings["queries"], model.finetune) == (
        "transcript",
        "utterance_qformer",
        8,
        "lora",
    )
    arms = {arm: load_config(TrainConfig, CONFIGS / f"open-{arm}.yaml") for arm in ("vanilla", "selfpowered")}
    for train in arms.values():
        assert train.init_from == init.output and train.optim.lr_connector > 0 and train.optim.max_steps == 200
        assert train.data.feature_cache == "demo-output/hearing/train"
    assert arms["vanilla"].optim == arms["selfpowered"].optim
    corpora_asr = [p for p in arms["vanilla"].data.train if "paraling" not in p]
    assert len(corpora_asr) == 2 and set(corpora_asr) < set(arms["selfpowered"].data.train)
    assert [p for p in arms["selfpowered"].data.train if ".sp-" in p] == [
        "demo-output/aug/train.sp-1500.jsonl",
        "demo-output/aug/train-diverse.sp-1500.jsonl",
        "demo-output/aug/paraling.sp-1000.jsonl",
        "demo-output/aug/paraling.sp-1000.jsonl",
    ]


def test_a_config_inherits_its_base_and_overrides_it_key_by_key(tmp_path):
    from selfpowered.config import TrainConfig
    from selfpowered.config.loading import load_config

    (tmp_path / "base.yaml").write_text(
        "model: {connector: stack_mlp, lora_r: 4}\noptim: {lr_llm: 1.0e-4, max_steps: 10}\noutput: base-out\n"
        "data: {train: [a.jsonl]}\n"
    )
    (tmp_path / "stage.yaml").write_text("base: base.yaml\noutput: stage-out\noptim: {max_steps: 20}\n")
    config = load_config(TrainConfig, tmp_path / "stage.yaml")
    assert config.output == "stage-out" and config.optim.max_steps == 20 and config.optim.lr_llm == 1e-4
    assert config.model.connector.name == "stack_mlp" and config.model.lora_r == 4 and config.data.train == ["a.jsonl"]
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="circle"):
        load_config(TrainConfig, tmp_path / "loop.yaml")
