"""The `align` stage: teach the connector alone to speak the LLM's token language, cheaply.

A random connector makes the LLM see noise; learning both at once through the LLM is too slow on
a CPU. Here the connector's output at every speech position is scored against the LLM's *frozen*
input embedding matrix (logits = scale x h . E^T, plus a learned blank), and a CTC loss asks the
sequence of positions to spell the transcript's LLM tokens. No LLM forward, so a step costs the
connector alone; afterwards the speech embeddings already lie near the token embeddings the LLM
knows, and `train` starts from there (`init_from`).

The head (`model/ctc.py`) is saved beside final/ as ctc_head.safetensors; an LSM built with
`speech_tokens: ctc_posterior` carries it inside the checkpoint instead and trains that one.

Every `save_steps` the whole training state (connector, head, optimizer, schedule, random
generators, the position in the epoch's batches) is written atomically to align_state.pt, and
`align --resume` continues from it exactly as if the run had never stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from selfpowered.atomic import atomic_file, atomic_write_text
from selfpowered.cards import CARD_FILE, checkpoint_card, write_card
from selfpowered.config import MaskingConfig
from selfpowered.errors import SelfPoweredError
from selfpowered.model import SpeechLM
from selfpowered.model.ctc import HEAD_FILE, CTCHead, ctc_vocabulary, head_transcripts
from selfpowered.model.processor import pad_states
from selfpowered.model.speech_tokens import speech_tokens_per_second
from selfpowered.text.metrics import word_error_rate
from selfpowered.train.data import SpeechInstructionDataset, TokenBudgetBatchSampler, read_samples
from selfpowered.train.features import build_feature_cache, open_cache
from selfpowered.train.masking import mask_states

logger = logging.getLogger(__name__)

STATE_FILE = "align_state.pt"  # in the output folder: what `align --resume` continues from
# settings that only change what is logged or how often the state is saved: a resume may change them
_RESUME_FREE = ("logging_steps", "save_steps", "dev")


def connect_items(
    model: SpeechLM,
    items: list[dict[str, Any]],
    masking: MaskingConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Cached-state dataset items -> the connector's padded output, its lengths, the transcripts
    (states masked SpecAugment-style first when `masking` is given)."""
    states, lengths = pad_states([item["states"] for item in items])
    if masking is not None:
        states = mask_states(states, lengths, masking, generator)
    speech, speech_lengths = model.connector(states, lengths)
    return speech, speech_lengths, [item["response"] for item in items]


def ctc_word_error_rate(
    model: SpeechLM, head: CTCHead, dataset: SpeechInstructionDataset, batch_size: int = 16
) -> float:
    """Greedy CTC transcription WER (Whisper-normalised) over a dataset."""
    model.eval()
    references, hypotheses = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            states, lengths = pad_states([item["states"] for item in items])
            hypotheses += head_transcripts(model, head, states, lengths)
            references += [item["response"] for item in items]
    model.train()
    return word_error_rate(references, hypotheses).wer


def _resumable_settings(config) -> dict[str, Any]:
    return config.model_dump(exclude=set(_RESUME_FREE))


def _load_state(path: Path, config) -> dict[str, Any]:
    """The saved state, refused when it was written under other settings (the run it would
    continue is not this one)."""
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file, written below
    saved, current = state["settings"], _resumable_settings(config)
    changed = sorted(key for key in current.keys() | saved.keys() if saved.get(key) != current.get(key))
    if changed:
        raise SelfPoweredError(
            f"{path}: written by an align run with other settings ({', '.join(changed)}); "
            "rerun with those settings, or delete the file to start over"
        )
    return state


@dataclass
class _Progress:
    """Where an align run is, and everything `--resume` must restore to continue bit for bit."""

    step: int = 0
    epoch: int = 0
    done_in_epoch: int = 0  # batches of this epoch already trained on
    log: list = field(default_factory=list)


def align(config, resume: bool = False) -> dict[str, Any]:
    """Train the connector with CTC (config: `AlignConfig`); saves a SpeechLM checkpoint.
    `resume`: continue from the output folder's align_state.pt when there is one."""
    started = time.perf_counter()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    if config.init_from:
        model = SpeechLM.from_pretrained(config.init_from, is_trainable=True)
    else:
        model = SpeechLM.build(**config.model.model_dump())
    model.train()
    train_set, dev_sets = _datasets(config, model)
    # an LSM in ctc_posterior mode reads its speech through this head, so it trains its own one
    head = model.ctc_head or CTCHead(model.llm.get_input_embeddings().weight, ctc_vocabulary(model.tokenizer))
    head.requires_grad_(True)
    parameters = list(model.connector.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=min(0.3, config.warmup_steps / config.steps)
    )
    sampler = TokenBudgetBatchSampler(
        train_set.token_lengths(speech_tokens_per_second(model.config)),
        config.token_budget,
        config.max_batch,
        config.seed,
    )
    masks = torch.Generator().manual_seed(config.seed)
    trained = {"connector": model.connector, "head": head, "optimizer": optimizer, "schedule": schedule}
    state_path = output / STATE_FILE
    progress, resumed_at = _Progress(), None
    if resume and state_path.is_file():
        progress = _restore(state_path, config, trained, masks)
        resumed_at = progress.step
        logger.info("align --resume: continuing at step %d of %d from %s", progress.step, config.steps, state_path)
    elif resume:
        logger.warning("align --resume: no %s yet; starting from the beginning", state_path)

    def save_state() -> None:
        state = {"settings": _resumable_settings(config), **{k: v.state_dict() for k, v in trained.items()},
                 "masks": masks.get_state(), "rng": torch.get_rng_state(), "step": progress.step,
                 "epoch": progress.epoch, "done_in_epoch": progress.done_in_epoch, "log": progress.log}  # fmt: skip
        with atomic_file(state_path) as temporary:
            torch.save(state, temporary)

    _train_steps(config, model, head, train_set, sampler, optimizer, schedule, parameters, masks, progress, save_state)
    summary: dict[str, Any] = {
        "steps": progress.step,
        "epochs": progress.epoch + (1 if progress.done_in_epoch else 0),  # epochs begun
        "resumed_at_step": resumed_at,
        "log": progress.log,
        **_wer_summary(model, head, train_set, dev_sets),
    }
    model.save_pretrained(output / "final")
    head.save(output / HEAD_FILE)
    card = checkpoint_card(model, config, config.train, {"stage": "align", "steps": progress.step})
    write_card(output / "final" / CARD_FILE, card)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_text(output / "align_summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _datasets(config, model) -> tuple[SpeechInstructionDataset, dict[str, SpeechInstructionDataset]]:
    """Every file's features first, then one cache handle for all sets: a handle opened before a
    later build would not know that build's entries."""
    train_samples = [s for path in config.train for s in read_samples(path, config.max_duration)]
    dev_samples = {path: read_samples(path, config.max_duration) for path in config.dev}
    audio = [s.audio for s in train_samples] + [s.audio for samples in dev_samples.values() for s in samples]
    build_feature_cache(model.encoder, model.mel, audio, config.feature_cache)
    cache = open_cache(config.feature_cache, model.encoder, model.mel)
    dev_sets = {path: SpeechInstructionDataset(samples, cache) for path, samples in dev_samples.items()}
    return SpeechInstructionDataset(train_samples, cache), dev_sets


def _restore(path: Path, config, trained: dict, masks: torch.Generator) -> _Progress:
    state = _load_state(path, config)
    for name, part in trained.items():
        part.load_state_dict(state[name])
    masks.set_state(state["masks"])
    torch.set_rng_state(state["rng"])  # dropout draws continue where they stopped
    return _Progress(state["step"], state["epoch"], state["done_in_epoch"], state["log"])


def _train_steps(config, model, head, train_set, sampler, optimizer, schedule, parameters, masks, progress, save):
    """CTC steps until `config.steps`, epoch after epoch (a resumed epoch skips what it trained on)."""
    bar = tqdm(total=config.steps, initial=progress.step, desc="align (CTC)", unit=" step")
    while progress.step < config.steps:
        sampler.set_epoch(progress.epoch)
        for number, indices in enumerate(sampler):
            if number < progress.done_in_epoch:  # trained on before the resume (the epoch's order is seeded)
                continue
            progress.done_in_epoch = number + 1
            speech, lengths, texts = connect_items(model, [train_set[i] for i in indices], config.masking, masks)
            targets, target_lengths = head.targets(model.tokenizer, texts)
            log_probs = head(speech).transpose(0, 1)  # (time, batch, classes) for ctc_loss
            loss = nn.functional.ctc_loss(
                log_probs, targets, lengths, target_lengths, blank=head.blank_index, zero_infinity=True
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            schedule.step()
            progress.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if progress.step % config.logging_steps == 0:
                progress.log.append({"step": progress.step, "loss": round(loss.item(), 4)})
            if progress.step % config.save_steps == 0 or progress.step >= config.steps:
                save()
            if progress.step >= config.steps:
                break
        else:  # the epoch ran out: the next one starts at its first batch
            progress.epoch, progress.done_in_epoch = progress.epoch + 1, 0
    bar.close()


def _wer_summary(model, head, train_set, dev_sets: dict) -> dict:
    """CTC WER on 200 training utterances, and on the dev files (overall and per file)."""
    summary = {"train_ctc_wer": round(ctc_word_error_rate(model, head, _subset(train_set, 200)), 4)}
    if dev_sets:  # overall (every dev utterance) and per file (e.g. in-domain vs other sources)
        merged = SpeechInstructionDataset([s for d in dev_sets.values() for s in d.samples], train_set.cache)
        summary["dev_ctc_wer"] = round(ctc_word_error_rate(model, head, merged), 4)
        if len(dev_sets) > 1:
            summary["dev_ctc_wer_per_file"] = {
                path: round(ctc_word_error_rate(model, head, dataset), 4) for path, dataset in dev_sets.items()
            }
    return summary


def _subset(dataset: SpeechInstructionDataset, count: int) -> SpeechInstructionDataset:
    return SpeechInstructionDataset(dataset.samples[:count], dataset.cache)
