"""Typed, validated configs: one pydantic model per concept and stage, YAML in, YAML echoed out.

A command loads its stage's YAML (if given), lays the flags that were set on top, then `--set`
overrides, and validates once (`loading.py`). Unknown keys are errors (a typo must not silently
fall back to a default), and every error names the file and the field. The models live by area:
`model.py` (architecture, decoding), `data.py` (corpus and augmentation stages), `training.py`,
`evaluation.py`; `STAGES` maps each command to its config (`selfpowered config show STAGE`).
"""

from __future__ import annotations

from selfpowered.config.base import StrictModel
from selfpowered.config.data import (
    AugmentConfig,
    FeaturesConfig,
    FilterConfig,
    ImportConfig,
    LimitsConfig,
    SynthConfig,
    ValidateConfig,
)
from selfpowered.config.evaluation import BASELINES, DemoConfig, EvalConfig
from selfpowered.config.loading import describe_config, dump_config, load_config, parse_overrides
from selfpowered.config.model import ChatConfig, GenerationSettings, InitConfig, ModelConfig
from selfpowered.config.serving import ServeConfig
from selfpowered.config.training import (
    AlignConfig,
    LossConfig,
    MaskingConfig,
    OptimConfig,
    TrainConfig,
    TrainDataConfig,
)

STAGES: dict[str, type[StrictModel]] = {
    "init": InitConfig,
    "chat": ChatConfig,
    "validate": ValidateConfig,
    "import": ImportConfig,
    "synth": SynthConfig,
    "augment": AugmentConfig,
    "features": FeaturesConfig,
    "align": AlignConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "demo": DemoConfig,
    "serve": ServeConfig,
}

__all__ = [
    "STAGES",
    "AlignConfig",
    "AugmentConfig",
    "BASELINES",
    "ChatConfig",
    "DemoConfig",
    "EvalConfig",
    "FeaturesConfig",
    "FilterConfig",
    "GenerationSettings",
    "ImportConfig",
    "InitConfig",
    "LimitsConfig",
    "LossConfig",
    "MaskingConfig",
    "ModelConfig",
    "OptimConfig",
    "ServeConfig",
    "StrictModel",
    "SynthConfig",
    "TrainConfig",
    "TrainDataConfig",
    "ValidateConfig",
    "describe_config",
    "dump_config",
    "load_config",
    "parse_overrides",
]
