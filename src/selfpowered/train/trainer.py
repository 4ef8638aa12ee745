"""`selfpowered train`: Hugging Face Trainer around the SpeechLM.

Trainer gives DDP, FSDP and DeepSpeed through `accelerate launch` and a config file; we add what
a speech model needs: token-budget length-grouped batches, cached encoder states, separate
learning rates for the connector and the LLM (LoRA or full), checkpoints written atomically
(staged, then renamed: a kill never leaves a half checkpoint that `--resume` would pick), and
resume that restores our weights (connector, adapter) along with Trainer's optimizer, scheduler,
RNG and data position.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from selfpowered.atomic import atomic_write_text
from selfpowered.cards import CARD_FILE, checkpoint_card, write_card
from selfpowered.config import LossConfig, MaskingConfig
from selfpowered.errors import SelfPoweredError
from selfpowered.model import SpeechLM
from selfpowered.model.modeling import CONNECTOR_PARTS
from selfpowered.model.speech_tokens import reads_transcript, speech_tokens_per_second
from selfpowered.train.data import Collator, SpeechInstructionDataset, TokenBudgetBatchSampler, read_samples
from selfpowered.train.losses import answer_logits, connector_ctc, distillation_kl, teacher_logits
from selfpowered.train.masking import mask_states

logger = logging.getLogger(__name__)


class SpeechTrainer(Trainer):
    """Trainer with our batching, optimizer groups, the loss mix (`loss:`), atomic checkpoints and resume."""

    def __init__(
        self,
        *args: Any,
        batch_sampler: TokenBudgetBatchSampler,
        lr_connector: float,
        losses: LossConfig | None = None,
        ctc_head=None,
        masking: MaskingConfig | None = None,
        **kwargs: Any,
    ):
        self.batch_sampler, self.lr_connector = batch_sampler, lr_connector
        self.losses, self.ctc_head = losses or LossConfig(), ctc_head
        self.masking = masking  # mask_states itself is a no-op when no masks are asked for
        self._mask_generator = torch.Generator().manual_seed(kwargs["args"].seed if "args" in kwargs else 0)
        self._parts: dict[str, list[float]] = {}
        super().__init__(*args, **kwargs)

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
        )
        return self.accelerator.prepare(loader)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = {
            key.removeprefix("teacher_"): inputs.pop(key) for key in [k for k in inputs if k.startswith("teacher_")]
        }
        ctc = {key: inputs.pop(key) for key in ("ctc_targets", "ctc_target_lengths") if key in inputs}
        if self.masking is not None and "encoder_states" in inputs and model.training:
            inputs["encoder_states"] = mask_states(
                inputs["encoder_states"], inputs["encoder_lengths"], self.masking, self._mask_generator
            )
        outputs = model(**inputs)
        weights, unwrapped = self.losses, self.accelerator.unwrap_model(model)
        parts = {"ce": outputs.loss}
        if weights.kl:
            student = answer_logits(outputs.logits, inputs["labels"])
            parts["kl"] = distillation_kl(student, teacher_logits(unwrapped, teacher), weights.kl_temperature)
        if weights.ctc:
            parts["ctc"] = connector_ctc(unwrapped, self.ctc_head, {**inputs, **ctc})
        loss = sum(getattr(weights, name) * value for name, value in parts.items())
        if len(parts) > 1:  # each part's mean joins the next log line (loss_ce, loss_kl, loss_ctc)
            for name, value in parts.items():
                self._parts.setdefault(name, []).append(float(value.detach()))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        for name, values in self._parts.items():
            if values and "loss" in logs:
                logs[f"loss_{name}"] = round(sum(values) / len(values), 4)
        if "loss" in logs:
            self._parts = {}
        super().log(logs, *args, **kwargs)

    def create_optimizer(self, model=None):
        """AdamW with two learning rates: the connector (new, random) and the LLM (LoRA or full)."""
        if self.optimizer is None:
            model = model or self.model
            groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
            for name, param in model.named_parameters():
                if param.requires_grad:
                    key = (name.split(".", 1)[0] in CONNECTOR_PARTS, param.ndim >= 2)
                    groups.setdefault(key, []).append(param)
            self.optimizer = torch.optim.AdamW(
                [
                    {
                        "params": params,
                        "lr": self.lr_connector if is_connector else self.args.learning_rate,
                        "weight_decay": self.args.weight_decay if is_matrix else 0.0,
                    }
                    for (is_connector, is_matrix), params in groups.items()
                ],
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
            )
        return self.optimizer

    def _save_checkpoint(self, model, trial) -> None:
        """Let Trainer write the checkpoint into a staging folder, then rename it into place.

        The staging name depends only on the step, so every process (each writes its own RNG state)
        writes into the same folder; the main process renames it once all have finished."""
        run_dir = Path(self._get_output_dir(trial=trial))
        staging = run_dir / f".staging-{self.state.global_step}"
        original = self._get_output_dir
        self._get_output_dir = lambda trial: str(staging)  # type: ignore[method-assign]
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._get_output_dir = original  # type: ignore[method-assign]
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            name = f"checkpoint-{self.state.global_step}"
            target = run_dir / name
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / name, target)
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the model into `output_dir` *beside* what other processes already put there
        (their RNG states): SpeechLM.save_pretrained replaces a folder whole, so it writes to a
        temporary folder whose files are then moved in."""
        if not self.args.should_save:
            return
        target = Path(output_dir or self.args.output_dir)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            written = Path(scratch) / "model"
            self.accelerator.unwrap_model(self.model).save_pretrained(written)
            for item in written.iterdir():
                destination = target / item.name
                if destination.is_dir():
                    shutil.rmtree(destination)
                os.replace(item, destination)
        torch.save(self.args, target / "training_args.bin")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        (model or self.model).load_trained_weights(Path(resume_from_checkpoint))


def build_model(config) -> SpeechLM:
    """A fresh LSM from `config.model`, or the checkpoint named by `config.init_from`."""
    if config.init_from:
        if not Path(config.init_from).exists():
            raise SelfPoweredError(
                f"init_from {config.init_from} does not exist: make it first (for the demo configs: "
                "selfpowered align configs/align-demo.yaml), or remove init_from to start from `model:`"
            )
        return SpeechLM.from_pretrained(config.init_from, is_trainable=True)
    return SpeechLM.build(**config.model.model_dump())


def _loss_parts(config, model: SpeechLM):
    """Check the loss mix against the model; load align's CTC head when `loss.ctc` is on."""
    if config.loss.kl and not model.is_lora:
        raise SelfPoweredError(
            "loss.kl needs finetune: lora - the teacher is the same LLM with its adapter switched off"
        )
    if not config.loss.ctc:
        return None
    if model.ctc_head is not None:  # a ctc_posterior LSM carries the head it reads its speech through
        return model.ctc_head
    from selfpowered.model.ctc import HEAD_FILE, CTCHead

    head = config.loss.ctc_head or (str(Path(config.init_from).parent / HEAD_FILE) if config.init_from else None)
    if head is None or not Path(head).is_file():
        raise SelfPoweredError(
            f"loss.ctc needs the CTC head that `selfpowered align` saves ({HEAD_FILE} beside its final/); "
            f"set loss.ctc_head (looked for {head})"
        )
    embeddings = model.llm.get_input_embeddings().weight
    return CTCHead.load(Path(head), embeddings).requires_grad_(False).to(embeddings.device)


def _checkpointing_argument(enabled: bool) -> dict[str, bool]:
    """transformers renamed gradient_checkpointing to activation_checkpointing (5.2x)."""
    if not enabled:
        return {}
    fields = TrainingArguments.__dataclass_fields__
    return {"activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing": True}


def _training_arguments(config, output: Path) -> TrainingArguments:
    """transformers' TrainingArguments for a `TrainConfig` (the batches come from our own sampler)."""
    use_cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output),
        max_steps=config.optim.max_steps,
        num_train_epochs=config.optim.epochs,
        learning_rate=config.optim.lr_llm,
        weight_decay=config.optim.weight_decay,
        warmup_steps=config.optim.warmup_steps,
        lr_scheduler_type=config.optim.schedule,
        max_grad_norm=config.optim.max_grad_norm,
        gradient_accumulation_steps=config.optim.grad_accum,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        **_checkpointing_argument(config.gradient_checkpointing),
        remove_unused_columns=False,
        report_to=[],
        dataloader_num_workers=config.data.num_workers,
        use_cpu=use_cpu,
        disable_tqdm=False,
        ddp_find_unused_parameters=False,
    )


def _hear_training_audio(model, config, samples, args) -> tuple:
    """A transcript-reading LSM: Whisper hears every training clip once into the hearing cache
    (`data.feature_cache`, required: the transcripts and states are read from it by the data
    loader); returns the cache and each sample's key."""

    if not config.data.feature_cache:
        raise SelfPoweredError(
            "speech_tokens: transcript reads what Whisper heard in each clip from a cache: set data.feature_cache"
        )
    hearing = model.new_hearing(cache_dir=config.data.feature_cache)
    with args.main_process_first(desc="hearing cache"):  # one process decodes; the others then read it
        keys = hearing.hear_files([s.audio for s in samples], config.data.cache_batch_size)
    return hearing.disk, keys


def _save_final(model, config, output: Path, summary: dict) -> None:
    """The final checkpoint, its data card and the run's summary."""
    model.save_pretrained(output / "final")
    card = checkpoint_card(
        model, config, config.data.train, {"steps": summary["steps"], "train_loss": summary["train_loss"]}
    )
    write_card(output / "final" / CARD_FILE, card)
    atomic_write_text(output / "train_summary.json", json.dumps(summary, indent=1) + "\n")


def train(config, resume: bool = False) -> dict[str, Any]:
    """Run one training job from a validated `TrainConfig`; returns a summary."""
    from selfpowered.config import dump_config
    from selfpowered.train.features import build_feature_cache, open_cache

    started = time.perf_counter()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:  # one process tidies up
        for stale in output.glob(".staging-*"):  # a checkpoint that a kill interrupted: never used
            shutil.rmtree(stale, ignore_errors=True)
    atomic_write_text(output / "train_config.yaml", dump_config(config))
    torch.manual_seed(config.seed)
    model = build_model(config)
    model.train()
    if config.optim.lr_connector == 0:  # frozen as loaded: no gradient, no optimizer state
        for part in CONNECTOR_PARTS:
            if getattr(model, part) is not None:
                getattr(model, part).requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise SelfPoweredError(
            f"{config.output}: nothing to train - the LLM is frozen (model.finetune: frozen) and so is the "
            "connector (optim.lr_connector: 0)"
        )
    ctc_head = _loss_parts(config, model)
    samples = [s for path in config.data.train for s in read_samples(path, config.data.max_duration)]
    checkpoint = None
    if resume:
        checkpoint = get_last_checkpoint(str(output))
        if checkpoint is None:
            logger.warning("--resume: no checkpoint in %s yet; starting from the beginning", output)
    args = _training_arguments(config, output)
    cache = heard = None
    if reads_transcript(model.config):
        heard = _hear_training_audio(model, config, samples, args)
    elif config.data.feature_cache:
        # One process encodes; the others wait, then find every file cached (two writers would
        # interleave their appends to the same cache file).
        with args.main_process_first(desc="feature cache"):
            build_feature_cache(
                model.encoder,
                model.mel,
                [s.audio for s in samples],
                config.data.feature_cache,
                config.data.cache_batch_size,
            )
        cache = open_cache(config.data.feature_cache, model.encoder, model.mel)
    dataset = SpeechInstructionDataset(samples, cache, heard)
    sampler = TokenBudgetBatchSampler(
        dataset.token_lengths(speech_tokens_per_second(model.config), model.processor.tag_line_tokens),
        config.optim.token_budget,
        config.optim.max_batch,
        config.seed,
    )
    trainer = SpeechTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=Collator(model.processor, teacher=config.loss.kl > 0, ctc_head=ctc_head),
        batch_sampler=sampler,
        lr_connector=config.optim.lr_connector,
        losses=config.loss,
        ctc_head=ctc_head,
        masking=config.masking,
    )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    summary = {
        "output": str(output),
        "steps": trainer.state.global_step,
        "train_loss": round(float(result.training_loss), 4),
        "samples": len(samples),
        "batches_per_epoch": len(sampler),
        "resumed_from": checkpoint,
        "seconds": round(time.perf_counter() - started, 1),
        "log": [entry for entry in trainer.state.log_history if "loss" in entry],
    }
    if trainer.args.should_save:
        _save_final(model, config, output, summary)
    return summary
