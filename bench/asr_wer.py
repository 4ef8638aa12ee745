"""ASR WER of a SpeechLM checkpoint on a manifest: the LLM's own transcription of the speech.

Issue 5's acceptance measure (demo test split: unseen sentences, half of them an unseen voice).
The full evaluation suite (issue 6) will supersede this; until then this is the one command.

    .venv/bin/python bench/asr_wer.py --model demo-output/train/vanilla/final \
        --manifest demo-output/corpus/test.jsonl --n 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from report import emit

from selfpowered.corpus.quality import sample_rows, score_transcripts
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
    rows = sample_rows(args.manifest, args.n, args.seed)
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
    report = {"model": args.model, "manifest": args.manifest, **score_transcripts(rows, answers)}
    report["seconds"] = round(seconds, 1)
    emit(report, args.out)


if __name__ == "__main__":
    main()
