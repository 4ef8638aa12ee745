"""Typed, validated configs: one pydantic model per stage, YAML in, YAML echoed out.

Every CLI flag is also a config key: a command loads its YAML (if given), lays the flags that were
set on top, then validates once. Unknown keys are errors (a typo must not silently fall back to a
default), and every error names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from selfpowered.assets import DEFAULT_ENCODER, DEFAULT_LLM
from selfpowered.errors import ConfigError
from selfpowered.text.echo import ECHO_MAX_WER


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(StrictModel):
    """How to build a fresh SpeechLM; defaults are the embedded CPU model. The one definition of
    these fields: `LSMConfig` (the checkpoint's config.json) validates its own through this model."""

    encoder: str = Field(DEFAULT_ENCODER, description="Whisper folder or embedded name")
    llm: str = Field(DEFAULT_LLM, description="causal LM folder or embedded name")
    connector: Literal["window_qformer", "stack_mlp"] = "window_qformer"
    window_seconds: float = Field(1 / 3, gt=0, description="Q-Former window length in real seconds")
    queries_per_window: int = Field(1, ge=1)
    qformer_layers: int = Field(2, ge=1)
    qformer_hidden_size: int = Field(768, ge=8)
    qformer_heads: int = Field(12, ge=1)
    qformer_ffn_size: int = Field(3072, ge=8)
    stack_factor: int = Field(4, ge=1, description="frames stacked per token (stack_mlp)")
    mlp_hidden_size: int = Field(1024, ge=8)
    connector_dropout: float = Field(0.1, ge=0, lt=1)
    finetune: Literal["lora", "full", "frozen"] = "lora"
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    train_encoder: bool = False
    prompt_format: Literal["chat_template", "vicuna_v1.1"] = "chat_template"
    system_prompt: str | None = None

    @classmethod
    def architecture_fields(cls) -> tuple[str, ...]:
        """Every field but the two base-model references: what a checkpoint's config stores."""
        return tuple(name for name in cls.model_fields if name not in ("encoder", "llm"))


class GenerationSettings(StrictModel):
    """Decoding settings (the paper decodes greedily with max_new_tokens 128)."""

    max_new_tokens: int = Field(128, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)


class ChatConfig(StrictModel):
    """`selfpowered chat`: one question to a checkpoint, from speech or from text."""

    model: str = Field(..., description="checkpoint folder written by SpeechLM.save_pretrained")
    audio: list[str] = Field(default_factory=list, description="audio files (speech mode)")
    instruction: str | None = Field(None, description="text instruction (speech mode) or prompt (text mode)")
    text_mode: bool = Field(False, description="run the LLM on the instruction alone, no speech")
    use_adapter: bool = True
    device: str = "cpu"
    generation: GenerationSettings = Field(default_factory=GenerationSettings)


class InitConfig(StrictModel):
    """`selfpowered init`: build a fresh (untrained) LSM and save it as a checkpoint."""

    output: str
    model: ModelConfig = Field(default_factory=ModelConfig)


class LimitsConfig(StrictModel):
    """What counts as a usable utterance (corpus validation, import, and every stage reading a manifest)."""

    min_duration: float = Field(0.1, ge=0)
    max_duration: float = Field(60.0, gt=0)
    min_sample_rate: int = Field(8000, ge=1)
    duration_tolerance: float = Field(0.1, ge=0, description="seconds between a row's duration and the audio's")
    check_audio: bool = Field(True, description="open each file (header) and measure its duration")
    decode: bool = Field(False, description="decode every sample too (finds NaN / corrupt bodies; slower)")


class ValidateConfig(StrictModel):
    """`selfpowered corpus validate`: check a manifest, list rejects, optionally write the good rows."""

    manifest: str
    output: str | None = Field(None, description="write the valid rows here")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)


class ImportConfig(StrictModel):
    """`selfpowered corpus import KIND SRC OUT`: an ASR corpus -> manifest + rejects."""

    kind: Literal["librispeech", "commonvoice", "table", "hf"]
    source: str
    output: str
    lowercase: bool = Field(True, description="librispeech: lower-case the all-caps transcripts")
    tsv: str = Field("validated.tsv", description="commonvoice: which tsv")
    lang: str = "en"
    split: str | None = Field(None, description="hf: which split of a DatasetDict")
    id_column: str | None = None
    audio_column: str | None = None
    text_column: str | None = None
    speaker_column: str | None = None
    duration_column: str | None = None
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    def importer_options(self) -> dict[str, Any]:
        """The keyword arguments the chosen importer takes (unset columns keep its defaults)."""
        columns = {
            key: value
            for key, value in (
                ("id_column", self.id_column),
                ("audio_column", self.audio_column),
                ("text_column", self.text_column),
                ("speaker_column", self.speaker_column),
            )
            if value is not None
        }
        if self.kind == "librispeech":
            return {"lowercase": self.lowercase}
        if self.kind == "commonvoice":
            return {"tsv": self.tsv, "lang": self.lang}
        if self.kind == "table":
            extra = {"duration_column": self.duration_column} if self.duration_column else {}
            return {**columns, **extra}
        return {**columns, "split": self.split}


class SynthConfig(StrictModel):
    """`selfpowered corpus synth`: the offline multi-voice TTS demo corpus."""

    output: str
    size: Literal["small", "demo"] = "small"
    voices: list[str] | None = Field(None, description="ENGINE:NAME list; default: every known voice")
    test_voice: str | None = Field("flite:rms", description="voice held out of train/dev")
    voices_per_sentence: int = Field(2, ge=1)
    seed: int = 0
    workers: int | None = Field(None, ge=1, description="processes; default: all cores")
    tempo_min: float = Field(0.9, gt=0)
    tempo_max: float = Field(1.1, gt=0)
    check_wer: int = Field(0, ge=0, description="after synthesis, Whisper-transcribe this many test utterances")
    splits: list[Literal["train", "dev", "test"]] | None = Field(
        None, description="make only these splits (same utterances as in the whole corpus); default all"
    )


class FilterConfig(StrictModel):
    """Which LLM answers augmentation drops (each drop is counted and listed with its reason)."""

    require_final_punctuation: bool = True
    copy_max_wer: float = Field(ECHO_MAX_WER, ge=0, description="answer this close to the transcript = a copy")
    drop_refusals: bool = True


class AugmentConfig(StrictModel):
    """`selfpowered augment MANIFEST OUT`: self-powered (or vanilla) instruction samples."""

    manifest: str
    output: str
    recipe: Literal["selfpowered", "vanilla"] = "selfpowered"
    tasks: str = Field("demo", description="task library: paper | demo | path to a YAML preset")
    task_weights: dict[str, float] = Field(default_factory=dict)
    task_variants: dict[str, str] = Field(default_factory=dict, description="e.g. {continuation: en}")
    engine: Literal["hf", "openai"] = "hf"
    llm: str = Field(DEFAULT_LLM, description="hf: model folder or embedded name")
    server_url: str | None = Field(None, description="openai: base URL ending in /v1")
    server_model: str | None = Field(None, description="openai: model name (default: the first served)")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the key")
    concurrency: int = Field(8, ge=1)
    max_retries: int = Field(5, ge=0)
    device: str = "cpu"
    max_new_tokens: int = Field(225, ge=1)
    max_prompt_tokens: int = Field(150, ge=1)
    token_budget: int = Field(65536, ge=64, description="hf: batch rows x (prompt + new tokens) at most")
    max_batch: int = Field(256, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0
    shard: str = Field("0/1", pattern=r"^\d+/\d+$", description="i/N: this process's share of the manifest")
    limit: int | None = Field(None, ge=1, description="only the first N rows of the shard")
    chunk_size: int = Field(64, ge=1, description="requests handed to the engine at a time (what a kill can lose)")
    filters: FilterConfig = Field(default_factory=FilterConfig)

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, value: str) -> str:
        index, count = (int(part) for part in value.split("/"))
        if not 0 <= index < count:
            raise ValueError(f"shard {value}: need 0 <= i < N")
        return value

    @property
    def shard_index_count(self) -> tuple[int, int]:
        index, count = (int(part) for part in self.shard.split("/"))
        return index, count


class FeaturesConfig(StrictModel):
    """`selfpowered features`: cache the frozen encoder's output for every audio file once."""

    inputs: list[str] = Field(..., min_length=1, description="manifests or sample files")
    cache: str = Field(..., description="feature cache folder")
    encoder: str = Field(DEFAULT_ENCODER, description="Whisper folder or embedded name")
    batch_size: int = Field(8, ge=1)
    device: str = "cpu"


class TrainDataConfig(StrictModel):
    train: list[str] = Field(..., min_length=1, description="sample files (augment output) or ASR manifests")
    max_duration: float = Field(30.0, gt=0, description="longer utterances are skipped (listed in rejects)")
    feature_cache: str | None = Field(None, description="encoder feature cache folder (built if missing)")
    cache_batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0, description="data-loader processes preparing batches (the processor)")


class OptimConfig(StrictModel):
    lr_connector: float = Field(1e-3, gt=0)
    lr_llm: float = Field(2e-4, gt=0, description="LoRA (or full) LLM learning rate")
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    max_grad_norm: float = Field(1.0, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="> 0 overrides epochs")
    token_budget: int = Field(4096, ge=16, description="tokens per batch (speech + text, estimated)")
    max_batch: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)


class TrainConfig(StrictModel):
    """`selfpowered train CONFIG`: one training stage (configs/demo.yaml, configs/paper.yaml)."""

    output: str
    model: ModelConfig = Field(default_factory=ModelConfig)
    init_from: str | None = Field(None, description="start from this checkpoint instead of `model`")
    data: TrainDataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    seed: int = 0
    save_steps: int = Field(200, ge=1)
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(10, ge=1)


class AlignConfig(StrictModel):
    """`selfpowered align CONFIG`: the connector alone learns the LLM's token space with CTC."""

    output: str
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(connector="stack_mlp"))
    init_from: str | None = None
    train: list[str] = Field(..., min_length=1, description="ASR manifests or sample files")
    dev: list[str] = Field(default_factory=list, description="held-out files for the CTC WER")
    feature_cache: str
    max_duration: float = Field(30.0, gt=0)
    steps: int = Field(700, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    token_budget: int = Field(2048, ge=16)
    max_batch: int = Field(16, ge=1)
    seed: int = 0
    logging_steps: int = Field(20, ge=1)


EVAL_SUITES = ("asr", "instruct", "conflict", "sqa", "text", "bias")
BASELINES = ("cascade", "text")


class EvalConfig(StrictModel):
    """`selfpowered eval`: score LSM checkpoints and the baselines on the same samples."""

    models: list[str] = Field(
        default_factory=list, description="LSM checkpoints, as PATH or NAME=PATH (the name labels the report)"
    )
    baselines: list[Literal["cascade", "text"]] = Field(default_factory=lambda: list(BASELINES))
    suites: list[Literal["asr", "instruct", "conflict", "sqa", "text", "bias"]] = Field(
        default_factory=lambda: list(EVAL_SUITES)
    )
    data: str = Field(..., description="held-out ASR manifest (e.g. demo-output/corpus/test.jsonl)")
    output: str = Field("eval-output", description="report folder (predictions cached here: resumable)")
    limit: int = Field(200, ge=1, description="utterances drawn (seeded) from `data` for asr and instruct")
    tasks: str = Field("demo", description="task library the models were trained with: paper | demo | YAML")
    heldout_tasks: str | None = Field(
        "demo-heldout", description="never-trained paraphrases of the same tasks (paper-heldout for paper)"
    )
    task_variants: dict[str, str] = Field(default_factory=dict, description="e.g. {continuation: en}")
    asr_tasks: str = Field("paper", description="library whose `asr` templates the asr suite uses")
    llm: str | None = Field(None, description="LLM of the baselines (default: the first model's base LLM)")
    asr_model: str = Field(DEFAULT_ENCODER, description="Whisper of the cascade baseline")
    probe_voice: str = Field("flite:rms", description="TTS voice of the conflict/sqa probes (held out in the demo)")
    conflict_items: int = Field(48, ge=1)
    sqa_items: int = Field(60, ge=2)
    bias_samples: int = Field(24, ge=1, description="instruct samples per model for attention/saliency")
    seed: int = 0
    device: str = "cpu"
    chunk_size: int = Field(32, ge=1, description="queries per progress step (and per timing)")
    generation: GenerationSettings = Field(default_factory=GenerationSettings)

    @field_validator("models", "suites", "baselines", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        """`-m a,b -m c` and `--suites asr,instruct` arrive as comma-joined strings; `none` = empty."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        parts = [part.strip() for item in items for part in str(item).split(",")]
        return [part for part in parts if part and part != "none"]


class DemoConfig(StrictModel):
    """`selfpowered demo`: the whole experiment on the embedded default (writes demo-output/)."""

    retrain: bool = Field(
        False,
        description="run every stage (corpus, augment, align, train) instead of evaluating the shipped checkpoints",
    )
    fresh: bool = Field(False, description="remove finished stages' outputs and run them again")
    checkpoints: str = Field("checkpoints/demo", description="shipped checkpoints (vanilla/, selfpowered/)")
    eval_config: str = Field("configs/eval-demo.yaml", description="EvalConfig YAML of the eval stage")


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
}

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a mapping of keys")
    data[keys[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["optim.lr_llm=1e-4", "data.train=[a.jsonl, b.jsonl]"]` -> {dotted key: YAML-parsed value}."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr_llm=1e-4")
        try:
            parsed[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    return parsed


def load_config(
    cls: type[ConfigT],
    path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> ConfigT:
    """Read YAML (optional), apply dotted-key `flags` whose value is not None (options not given on
    the command line are None), then `overrides` (--set: applied even when null), validate once."""
    data: dict[str, Any] = {}
    source = str(path) if path else "command line"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded or {}
    for key, value in (flags or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc


def dump_config(config: BaseModel) -> str:
    """The validated config as YAML: what actually ran, for logs and checkpoints."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def describe_config(stage: str) -> str:
    """A stage's config as commented YAML: every key, its default (or `required`), what it means."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    cls = STAGES[stage]
    return (
        f"# selfpowered {stage}: {(cls.__doc__ or '').strip().splitlines()[0]}\n"
        + "\n".join(_describe(cls, None, 0))
        + "\n"
    )


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump([value], default_flow_style=True, width=10_000).strip()[1:-1]


def _describe(cls: type[BaseModel], values: BaseModel | None, depth: int) -> list[str]:
    lines = []
    pad = "  " * depth
    for name, field in cls.model_fields.items():
        comment = f"  # {field.description}" if field.description else ""
        if values is not None:
            default = getattr(values, name)
        elif field.is_required():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                lines.append(f"{pad}{name}:  # required section{comment.replace('  #', ':', 1)}")
                lines += _describe(field.annotation, None, depth + 1)
            else:
                lines.append(f"{pad}{name}:  # required{comment.replace('  #', ' -', 1)}")
            continue
        else:
            default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            lines.append(f"{pad}{name}:{comment}")
            lines += _describe(type(default), default, depth + 1)
        else:
            lines.append(f"{pad}{name}: {_yaml_value(default)}{comment}")
    return lines
