"""How much of Whisper's 30 s window does hearing need? WER and seconds per clip of
`model.hearing` with the full window vs the speech plus 5 / 10 / 15 s of padding.

The choice is made on dev sets (`--sets dev`: the demo corpus's dev split), never on the test
sets the README reports; `--sets test` then shows the chosen window on demo test, ood and real.

    .venv/bin/python bench/hearing_window.py --sets dev --out bench/results/speed/hearing_window_dev.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from selfpowered.audio import load_audio
from selfpowered.corpus.quality import sample_rows
from selfpowered.model.hearing import WhisperHearing
from selfpowered.text.metrics import word_error_rate

SETS = {
    "dev": {"demo dev": "demo-output/corpus/dev.jsonl", "diverse dev": "demo-output/diverse/dev.jsonl"},
    "test": {
        "demo test": "demo-output/corpus/test.jsonl",
        "ood": "demo-output/ood/test.jsonl",
        "real": "demo-output/real/real.jsonl",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", choices=SETS, default="dev")
    parser.add_argument("--per-set", type=int, default=400)
    parser.add_argument("--windows", default="30,5,10,15", help="30 = the whole window; else seconds of padding")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    data = {}
    for name, path in SETS[args.sets].items():
        if Path(path).is_file():
            rows = sample_rows(Path(path), args.per_set, 0)
            data[name] = (rows, [load_audio(row.audio_path(Path(path).parent)) for row in rows])
    results = []
    reference = None
    for window in args.windows.split(","):
        pad = None if float(window) >= 30 else float(window)
        hearing = WhisperHearing("whisper-tiny.en", compute_type=args.compute_type, window=pad)
        hearing.hear([next(iter(data.values()))[1][0]])  # warm-up
        row = {"window": "30 s (whole)" if pad is None else f"speech + {pad:g} s"}
        texts, clips, seconds = {}, 0, 0.0
        for name, (rows, audio) in data.items():
            started = time.perf_counter()
            texts[name] = hearing.transcribe(audio)
            seconds += time.perf_counter() - started
            clips += len(audio)
            row[f"wer {name}"] = round(word_error_rate([r.text for r in rows], texts[name]).wer, 4)
        row["s_per_clip"] = round(seconds / clips, 4)
        if reference is None:
            reference = texts
        row["same_text_as_whole_window"] = round(
            sum(a == b for name in texts for a, b in zip(texts[name], reference[name])) / clips, 4
        )
        results.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, 2 cores",
        "compute_type": args.compute_type,
        "clips": {name: len(audio) for name, (_, audio) in data.items()},
        "rows": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
