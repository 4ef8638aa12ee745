"""ASR WER of a SpeechLM checkpoint on a manifest: the LLM's own transcription of the speech.

Issue 5's acceptance measure (demo test split: unseen sentences, half of them an unseen voice).
The full evaluation suite (issue 6) will supersede this; until then this is the one command.

    .venv/bin/python bench/asr_wer.py --model demo-output/train/vanilla/final \
        --manifest demo-output/corpus/test.jsonl --n 200
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import torch

from selfpowered.corpus.manifest import ValidationLimits, read_manifest
from selfpowered.evaluate.metrics import word_error_rate
from selfpowered.model import SpeechLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--instruction", default="Transcribe the spoken words into written English text")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rows = read_manifest(args.manifest, ValidationLimits(check_audio=False)).rows
    rows = random.Random(args.seed).sample(rows, min(args.n, len(rows)))
    base = Path(args.manifest).parent
    model = SpeechLM.from_pretrained(args.model)
    start = time.perf_counter()
    answers = model.generate(
        audio=[str(row.audio_path(base)) for row in rows],
        instruction=[args.instruction] * len(rows),
        max_new_tokens=args.max_new_tokens,
        repetition_penalty=args.repetition_penalty,
        batch_size=16,
    )
    seconds = time.perf_counter() - start
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_speaker[row.speaker or "?"].append(index)
    report = {
        "model": args.model,
        "manifest": args.manifest,
        "utterances": len(rows),
        "wer": round(word_error_rate([r.text for r in rows], answers).wer, 4),
        "wer_per_speaker": {
            speaker: round(word_error_rate([rows[i].text for i in idx], [answers[i] for i in idx]).wer, 4)
            for speaker, idx in sorted(by_speaker.items())
        },
        "seconds": round(seconds, 1),
        "examples": [{"ref": rows[i].text, "hyp": answers[i]} for i in range(min(5, len(rows)))],
    }
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
