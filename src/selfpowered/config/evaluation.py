"""Configs of `eval` and `demo`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from selfpowered.assets import DEFAULT_ENCODER
from selfpowered.config.base import StrictModel
from selfpowered.config.model import GenerationSettings

BASELINES = ("cascade", "text")


class EvalConfig(StrictModel):
    """`selfpowered eval`: score LSM checkpoints and the baselines on the same samples."""

    # each suite's settings are a section named after it (`content: {data: ..., limit: 120}`): the
    # suites register themselves in evaluate/suites/, which validates these sections (resolve_suites)
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    models: list[str] = Field(
        default_factory=list, description="LSM checkpoints, as PATH or NAME=PATH (the name labels the report)"
    )
    baselines: list[Literal["cascade", "text"]] = Field(default_factory=lambda: list(BASELINES))
    suites: list[str] | None = Field(
        None,
        description="the suites to run (default: every suite that needs no data of its own); "
        "each has a section of its settings named after it - `selfpowered config show eval` lists them",
    )
    data: str = Field(..., description="held-out ASR manifest (e.g. demo-output/corpus/test.jsonl)")
    output: str = Field("eval-output", description="report folder (predictions cached here: resumable)")
    limit: int = Field(200, ge=1, description="utterances drawn (seeded) from `data` for asr and instruct")
    ood_sets: dict[str, str] = Field(
        default_factory=dict,
        description="NAME: manifest of test sets outside the training domain (e.g. real: real.jsonl); "
        "each gets the asr and instruct suites, WER per speaker and the self-echo rate",
    )
    ood_limit: int = Field(250, ge=1, description="utterances drawn (seeded) from each of `ood_sets`")
    tasks: str = Field("demo", description="task library the models were trained with: paper | demo | YAML")
    heldout_tasks: str | None = Field(
        "demo-heldout", description="never-trained paraphrases of the same tasks (paper-heldout for paper)"
    )
    task_variants: dict[str, str] = Field(default_factory=dict, description="e.g. {continuation: en}")
    llm: str | None = Field(None, description="LLM of the baselines (default: the first model's base LLM)")
    asr_model: str = Field(DEFAULT_ENCODER, description="Whisper of the cascade baseline")
    probe_voice: str = Field("flite:rms", description="TTS voice of the conflict/sqa probes (held out in the demo)")
    seed: int = 0
    device: str = "cpu"
    chunk_size: int = Field(
        256, ge=1, description="queries handed to a system at a time (per progress step and timing): its batches fill"
    )
    generation: GenerationSettings = Field(default_factory=GenerationSettings)

    @field_validator("generation")
    @classmethod
    def _decoding_eval_applies(cls, value: GenerationSettings) -> GenerationSettings:
        """Every system decodes greedily through the engines; a repetition penalty would apply to
        some systems and not others (or to none), so it is refused rather than silently dropped."""
        if value.repetition_penalty != 1.0:
            raise ValueError(
                "eval decodes every system alike and does not apply repetition_penalty; "
                "leave it at 1.0 (use no_repeat_ngram_size to stop loops)"
            )
        return value

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
        description="run the recipe's every stage (corpus, augment, train...) instead of evaluating the shipped "
        "checkpoints (the `shipped` recipe)",
    )
    fresh: bool = Field(False, description="remove finished stages' outputs and run them again")
    recipe: str = Field(
        "open",
        description="with retrain: a recipe of configs/recipes/ by name (open: the shipped checkpoints' recipe; "
        "grammar: the paper's setting on one hand-written grammar) or a recipe YAML file",
    )
    checkpoints: str = Field("checkpoints/demo", description="shipped checkpoints (vanilla/, selfpowered/)")
    eval_config: str = Field("configs/eval-demo.yaml", description="EvalConfig YAML of the eval stage")


class RecipeStage(StrictModel):
    """One stage of a recipe: a public `selfpowered` command and what it writes."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    run: str = Field(..., min_length=1, description="the command after `selfpowered` ({checkpoints}, {pocketsphinx})")
    outputs: list[str] = Field(default_factory=list, description="what --fresh removes before running it again")
    always_run: bool = Field(False, description="run even when finished before (eval: its answers are cached)")


class Recipe(StrictModel):
    """A recipe (configs/recipes/NAME.yaml): the stages `selfpowered demo` runs, in order."""

    name: str
    description: str = ""
    root: str = Field("demo-output", description="where the eval report (ROOT/eval), summary and verdict go")
    stages: list[RecipeStage] = Field(..., min_length=1)
