"""Training throughput: our pipeline vs the official pipeline's way, same model, same data, one run.

Official way (Self-powered-LSM): every step pads each utterance's audio to 30 s, runs the frozen
Whisper encoder on all 3000 mel frames, and feeds a fixed batch; its window Q-Former then sees
1500 encoder frames per utterance (about 88 speech tokens whatever the duration). Ours: the
encoder ran once into the feature cache (timed separately, a one-off cost), batches come
length-grouped under a token budget, and speech tokens follow the real duration. Both: the same
SpeechLM (embedded Whisper tiny.en + SmolLM2-135M, window Q-Former, LoRA r=8 q/v), the same
samples, AdamW, one pass over the samples, fp32 on this CPU.

    .venv/bin/python bench/train_throughput.py --samples demo-output/aug/train.sp.jsonl --n 48
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np
import torch
from report import emit

from selfpowered.audio import SAMPLE_RATE, load_audio
from selfpowered.model import SpeechLM
from selfpowered.model.connectors import speech_tokens_per_second
from selfpowered.train.data import Collator, SpeechInstructionDataset, TokenBudgetBatchSampler, read_samples
from selfpowered.train.features import build_feature_cache, open_cache


def step(model: SpeechLM, optimizer: torch.optim.Optimizer, inputs: dict) -> float:
    loss = model(**inputs).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def official_pass(model: SpeechLM, samples, batch_size: int) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    start = time.perf_counter()
    for first in range(0, len(samples), batch_size):
        batch = samples[first : first + batch_size]
        # the official feature extractor pads the audio to 30 s; the encoder then runs on 3000 frames
        clips = [load_audio(s.audio) for s in batch]
        padded = [np.pad(clip, (0, max(0, 30 * SAMPLE_RATE - clip.size))) for clip in clips]
        inputs = model.processor([s.instruction for s in batch], audio=padded, response=[s.response for s in batch])
        step(model, optimizer, inputs)
    return time.perf_counter() - start


def our_pass(
    model: SpeechLM, dataset: SpeechInstructionDataset, token_budget: int, max_batch: int
) -> tuple[float, int]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    sampler = TokenBudgetBatchSampler(
        dataset.token_lengths(speech_tokens_per_second(model.config)), token_budget, max_batch
    )
    collate = Collator(model.processor)
    start = time.perf_counter()
    for indices in sampler:
        step(model, optimizer, collate([dataset[i] for i in indices]))
    return time.perf_counter() - start, len(sampler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", required=True)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8, help="official: fixed batch")
    parser.add_argument("--token-budget", type=int, default=1536, help="ours")
    parser.add_argument("--max-batch", type=int, default=32, help="ours")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    samples = read_samples(args.samples)[: args.n]
    model = SpeechLM.build()
    model.train()
    official_s = official_pass(model, samples, args.batch_size)
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        build_feature_cache(model.encoder, model.mel, [s.audio for s in samples], cache_dir)
        cache_s = time.perf_counter() - start
        dataset = SpeechInstructionDataset(samples, open_cache(cache_dir, model.encoder, model.mel))
        ours_s, batches = our_pass(model, dataset, args.token_budget, args.max_batch)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "samples": len(samples),
        "official": {
            "batch": args.batch_size,
            "seconds": round(official_s, 1),
            "samples_per_s": round(len(samples) / official_s, 3),
        },
        "ours": {
            "token_budget": args.token_budget,
            "batches": batches,
            "seconds": round(ours_s, 1),
            "samples_per_s": round(len(samples) / ours_s, 3),
            "cache_build_seconds_once": round(cache_s, 1),
        },
    }
    report["ratio"] = round(report["ours"]["samples_per_s"] / report["official"]["samples_per_s"], 2)
    report["ratio_including_cache_build"] = round(official_s / (ours_s + cache_s), 2)
    emit(report, args.out)


if __name__ == "__main__":
    main()
