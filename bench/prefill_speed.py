"""The engine's prefill with the shared prompt prefix run once (`model.prefill.prefill`) against the
whole left-padded prompt for every row, side by side in one run on the shipped self-powered
checkpoint: the eval's kinds of work - open answers to clips, open answers to text prompts (the
text baseline's and augmentation's shape) and closed questions scored by likelihood
(`paraling-choice`) - in batches of 64, rounds alternating the two ways so drift in the machine
falls on both. Reports the median seconds of each way, the ratio, and how many answers are the same.

    .venv/bin/python bench/prefill_speed.py --out bench/results/speed/prefill_speed.json

Needs the demo test set (`make demo` writes demo-output/corpus).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from selfpowered.audio import load_audio
from selfpowered.model import SpeechLM, prefill
from selfpowered.model.choosing import choose_all
from selfpowered.model.engine import Request, generate_all
from selfpowered.model.served import ServedModel
from selfpowered.text.tasks import text_prompt

INSTRUCTIONS = (  # open requests of the kinds the eval asks (none is a trained wording: nothing depends on it)
    "Summarise this in one sentence.",
    "Continue the text with one more sentence.",
    "What is the main topic?",
    "Translate this into French.",
)
QUESTION = "Is the speaker a man or a woman? Answer with one word: man or woman."
WAYS = {"shared prefix once": prefill.MIN_SHARED_PREFIX, "whole prompt per row": 10**9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/demo/selfpowered")
    parser.add_argument("--data", default="demo-output/corpus/test.jsonl")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)

    model = SpeechLM.from_pretrained(args.checkpoint).eval()
    served = ServedModel.from_lsm("selfpowered", model)
    base = Path(args.data).parent
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    audio = [load_audio(base / row["audio"]) for row in rows[: args.clips]]
    prompts = [text_prompt(INSTRUCTIONS[i % 4], row["text"]) for i, row in enumerate(rows[: args.texts])]

    def work() -> dict[str, tuple[float, list[str]]]:
        spoken = [Request("s", INSTRUCTIONS[i % 4], clip) for i, clip in enumerate(audio)]
        written = [Request("s", prompt, None) for prompt in prompts]
        closed = [Request("s", QUESTION, clip, max_tokens=1) for clip in audio]
        out = {}
        for name, requests in (("open, clips", spoken), ("open, text prompts", written)):
            started = time.perf_counter()
            said = [r.text for r in generate_all(served, requests, args.batch)]
            out[name] = (time.perf_counter() - started, said)
        started = time.perf_counter()
        chosen = choose_all(served, closed, [("man", "woman")] * len(closed), args.batch)
        out["closed, by likelihood"] = (time.perf_counter() - started, chosen)
        return out

    work()  # warm-up: every clip heard once (the hearing's cache), first-call costs paid
    seconds: dict[str, dict[str, list[float]]] = {way: {} for way in WAYS}
    answers: dict[str, dict[str, list[str]]] = {}
    for round_ in range(args.rounds):
        for way in WAYS if round_ % 2 == 0 else reversed(WAYS):
            prefill.MIN_SHARED_PREFIX = WAYS[way]
            for kind, (spent, said) in work().items():
                seconds[way].setdefault(kind, []).append(spent)
                answers.setdefault(way, {})[kind] = said
            print(f"round {round_ + 1}, {way}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds[way].items()))
    prefill.MIN_SHARED_PREFIX = WAYS["shared prefix once"]

    once, whole = WAYS
    table = {}
    for kind in seconds[once]:
        a, b = statistics.median(seconds[once][kind]), statistics.median(seconds[whole][kind])
        same = sum(x == y for x, y in zip(answers[once][kind], answers[whole][kind]))
        table[kind] = {
            "answers": len(answers[once][kind]),
            "seconds_shared_prefix_once": round(a, 2),
            "seconds_whole_prompt": round(b, 2),
            "ratio": round(a / b, 3),
            "same_answers": same,
        }
        print(f"{kind}: {a:.1f} s vs {b:.1f} s ({a / b:.2f}x), same answers {same}/{len(answers[once][kind])}")
    total_a = sum(statistics.median(v) for v in seconds[once].values())
    total_b = sum(statistics.median(v) for v in seconds[whole].values())
    print(f"all: {total_a:.1f} s vs {total_b:.1f} s ({total_a / total_b:.2f}x)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "kinds": table,
            "all": {
                "seconds_shared_prefix_once": round(total_a, 2),
                "seconds_whole_prompt": round(total_b, 2),
                "ratio": round(total_a / total_b, 3),
            },  # fmt: skip
            "rounds": args.rounds,
            "batch": args.batch,
            "checkpoint": args.checkpoint,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
