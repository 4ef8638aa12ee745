"""What the extra losses cost per training step: ce vs ce+kl vs ce+ctc vs ce+kl+ctc, one run,
the same batches, the same model and data (the demo LSM on self-powered samples), on this machine.

Each mix trains `--steps` steps from the same initial weights on the same fixed batches (cached
encoder states, as `train` uses them); the first step of each is a warm-up and not timed.

    .venv/bin/python bench/loss_cost.py --init demo-output/align/final --samples demo-output/aug/train.sp.jsonl \
        --cache demo-output/features/whisper-tiny.en --out bench/results/loss_cost.json
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from pathlib import Path

import torch
from report import emit

from selfpowered.config import LossConfig
from selfpowered.model import SpeechLM
from selfpowered.model.connectors import speech_tokens_per_second
from selfpowered.model.ctc import HEAD_FILE, CTCHead
from selfpowered.train.data import Collator, SpeechInstructionDataset, TokenBudgetBatchSampler, read_samples
from selfpowered.train.features import build_feature_cache, open_cache
from selfpowered.train.losses import answer_logits, connector_ctc, distillation_kl, teacher_logits

MIXES = {"ce": {}, "ce+kl": {"kl": 1.0}, "ce+ctc": {"ctc": 0.3}, "ce+kl+ctc": {"kl": 1.0, "ctc": 0.3}}


def step_seconds(model: SpeechLM, batches: list[dict], loss: LossConfig, head) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for batch in batches:
        inputs = dict(batch)
        started = time.perf_counter()
        teacher = {k.removeprefix("teacher_"): inputs.pop(k) for k in [k for k in inputs if k.startswith("teacher_")]}
        ctc = {k: inputs.pop(k) for k in ("ctc_targets", "ctc_target_lengths") if k in inputs}
        outputs = model(**inputs)
        total = loss.ce * outputs.loss
        if loss.kl:
            student = answer_logits(outputs.logits, inputs["labels"])
            total = total + loss.kl * distillation_kl(student, teacher_logits(model, teacher), loss.kl_temperature)
        if loss.ctc:
            total = total + loss.ctc * connector_ctc(model, head, {**inputs, **ctc})
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", type=Path, required=True, help="an align checkpoint (final/)")
    parser.add_argument("--samples", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--token-budget", type=int, default=1536)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    base = SpeechLM.from_pretrained(args.init, is_trainable=True)
    samples = read_samples(args.samples)
    sampler = TokenBudgetBatchSampler(
        SpeechInstructionDataset(samples).token_lengths(speech_tokens_per_second(base.config)), args.token_budget, 16
    )
    chosen = [samples[i] for indices in list(sampler)[: args.steps + 1] for i in indices]
    build_feature_cache(base.encoder, base.mel, [s.audio for s in chosen], args.cache)
    dataset = SpeechInstructionDataset(samples, open_cache(args.cache, base.encoder, base.mel))
    head = CTCHead.load(args.init.parent / HEAD_FILE, base.llm.get_input_embeddings().weight).requires_grad_(False)
    collate = Collator(base.processor, teacher=True, ctc_head=head)
    batches = [collate([dataset[i] for i in indices]) for indices in list(sampler)[: args.steps + 1]]
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    report["steps_timed"], report["mixes"] = args.steps, {}
    for name, weights in MIXES.items():
        model = copy.deepcopy(base).train()
        seconds = step_seconds(model, batches, LossConfig(**weights), head)
        report["mixes"][name] = {"seconds_per_step": round(statistics.median(seconds), 3)}
    reference = report["mixes"]["ce"]["seconds_per_step"]
    for entry in report["mixes"].values():
        entry["ratio_to_ce"] = round(entry["seconds_per_step"] / reference, 2)
    emit(report, args.out)


if __name__ == "__main__":
    main()
