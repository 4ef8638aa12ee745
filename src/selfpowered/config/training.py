"""Configs of the training stages: `train` and `align`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.config.model import ModelConfig


class TrainDataConfig(StrictModel):
    train: list[str] = Field(..., min_length=1, description="sample files (augment output) or ASR manifests")
    max_duration: float = Field(30.0, gt=0, description="longer utterances are skipped (listed in rejects)")
    feature_cache: str | None = Field(None, description="encoder feature cache folder (built if missing)")
    cache_batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0, description="data-loader processes preparing batches (the processor)")


class OptimConfig(StrictModel):
    lr_connector: float = Field(
        1e-3,
        ge=0,
        description="connector learning rate; 0 freezes it as loaded (a ctc_posterior LSM then keeps align's "
        "posterior: tuning it lets the connector drift from what its CTC head reads, bench/RESULTS.md issue 13)",
    )
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


class MaskingConfig(StrictModel):
    """SpecAugment-style masking of the cached encoder states while training (0 masks = off)."""

    time_masks: int = Field(0, ge=0, description="spans of frames zeroed per utterance")
    time_width: float = Field(0.05, ge=0, le=1, description="longest frame span, as a share of the utterance")
    channel_masks: int = Field(0, ge=0, description="spans of channels zeroed per utterance")
    channel_width: int = Field(27, ge=0, description="widest channel span")


class LossConfig(StrictModel):
    """What `train` minimises: a weighted sum of the paper's cross-entropy, self-distillation to
    the text-mode LLM, and the connector's CTC loss from `align`."""

    ce: float = Field(1.0, ge=0, description="cross-entropy on the answer tokens (the paper's loss)")
    kl: float = Field(
        0.0, ge=0, description="KL to the teacher: the same LLM, adapter off, given the transcript in text mode"
    )
    kl_temperature: float = Field(2.0, gt=0, description="softens both distributions (Ultravox uses 2)")
    ctc: float = Field(0.0, ge=0, description="the connector's CTC loss over the LLM's token embeddings, kept on")
    ctc_head: str | None = Field(
        None, description="align's ctc_head.safetensors (default: beside init_from, as `align` saves it)"
    )


class TrainConfig(StrictModel):
    """`selfpowered train CONFIG`: one training stage (configs/demo.yaml, configs/paper.yaml)."""

    output: str
    model: ModelConfig = Field(default_factory=ModelConfig)
    init_from: str | None = Field(None, description="start from this checkpoint instead of `model`")
    data: TrainDataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
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
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    seed: int = 0
    logging_steps: int = Field(20, ge=1)
    save_steps: int = Field(100, ge=1, description="write the resumable state (align_state.pt) every N steps")
