"""Augmentation throughput: our `hf` engine vs the official code's way, same model, same prompts.

The official Self-powered-LSM generation takes the transcripts in file order, in fixed batches of
32, left-padded to the longest prompt, and runs `generate(max_new_tokens=225)` until every row of
the batch is done. Ours sorts by prompt length, sizes batches by a token budget and drops finished
rows from the running batch (see model.generation.HFGenerator). Both decode greedily with the same stop
tokens and count only the useful tokens (up to and including the end-of-turn token). One run, one
machine, the same 200 prompts.

    .venv/bin/python bench/augment_throughput.py --manifest demo-output/corpus/train.jsonl --n 200
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from report import emit

from selfpowered.config import LimitsConfig
from selfpowered.corpus.manifest import read_manifest
from selfpowered.model.generation import HFGenerator
from selfpowered.text.engines import GenerationRequest
from selfpowered.text.tasks import TaskLibrary


def official_way(engine: HFGenerator, requests: list[GenerationRequest], batch_size: int = 32) -> tuple[int, float]:
    """File order, fixed batch, pad to longest, generate until the whole batch is done."""
    tokenizer, model = engine.tokenizer, engine.model
    useful = 0
    start = time.perf_counter()
    for first in range(0, len(requests), batch_size):
        batch = [engine.prompt_ids(r.prompt) for r in requests[first : first + batch_size]]
        width = max(len(ids) for ids in batch)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=engine.max_new_tokens,
                do_sample=False,
                eos_token_id=engine.served.stop_ids,
                pad_token_id=pad,
            )
        for row in out[:, width:].tolist():
            stop = next((i for i, token in enumerate(row) if token in engine.served.stop_ids), None)
            useful += len(row) if stop is None else stop + 1
    return useful, time.perf_counter() - start


def ours(engine: HFGenerator, requests: list[GenerationRequest]) -> tuple[int, float, list]:
    start = time.perf_counter()
    results = list(engine.generate(requests))
    return sum(r.completion_tokens for r in results), time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--tasks", default="demo")
    parser.add_argument("--llm", default="smollm2-135m-instruct")
    parser.add_argument("--max-new-tokens", type=int, default=225)
    parser.add_argument("--max-batch", type=int, default=32, help="ours: rows decoded together at most")
    parser.add_argument("--only-ours", action="store_true", help="tuning: skip the (slow) official run")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    rows = read_manifest(args.manifest, LimitsConfig(check_audio=False)).rows[: args.n]
    library = TaskLibrary.load(args.tasks, weights={"asr": 0})  # asr needs no LLM: leave it out of both
    requests = []
    for row in rows:
        draw = library.draw(row.id)
        requests.append(GenerationRequest(row.id, f"{draw.instruction}: {row.text}"))
    engine = HFGenerator(args.llm, max_new_tokens=args.max_new_tokens, max_batch=args.max_batch)
    torch.manual_seed(0)
    base_tokens, base_s = (1, float("nan")) if args.only_ours else official_way(engine, requests)
    our_tokens, our_s, results = ours(engine, requests)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "prompts": len(requests),
        "ours_settings": {"max_batch": args.max_batch},
        "official": {
            "useful_tokens": base_tokens,
            "seconds": round(base_s, 1),
            "tok_s": round(base_tokens / base_s, 2),
        },
        "ours": {"useful_tokens": our_tokens, "seconds": round(our_s, 1), "tok_s": round(our_tokens / our_s, 2)},
    }
    report["tok_s_ratio"] = round(report["ours"]["tok_s"] / report["official"]["tok_s"], 2)
    report["wall_ratio"] = round(base_s / our_s, 2)
    emit(report, args.out)


if __name__ == "__main__":
    main()
