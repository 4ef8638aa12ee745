"""An LSM that reads Whisper's transcript, asked to transcribe: where does it leave Whisper's words?

Reads a finished `selfpowered eval` output (the `asr` suite's cached answers; the cascade's answer
to a transcription request is Whisper's transcript itself) and counts, per LSM: answers that are
Whisper's transcript verbatim, answers with a higher (lower) WER than Whisper's against the true
transcript, and answers more than two words shorter than Whisper's (a paraphrase or a dropped
clause, not a mishearing). Prints a few of the worse answers.

    .venv/bin/python bench/asr_against_whisper.py demo-output/lam/eval-dev SP16 VA16 \\
        --out bench/results/adapter_variants/asr_against_whisper.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from report import emit

from selfpowered.evaluate.cache import PredictionCache
from selfpowered.text.metrics import word_error_rate


def answers(folder: Path, system: str, suite: str = "asr") -> dict[str, str]:
    path = PredictionCache(folder / "predictions").path(system, suite)
    if not path.is_file():
        raise SystemExit(f"{path}: no cached answers (run the eval with the asr suite and the cascade)")
    cached = json.loads(path.read_text())
    return dict(zip(cached["keys"], cached["answers"]))


def compare(truths: dict[str, str], whisper: dict[str, str], lsm: dict[str, str], examples: int = 5) -> dict:
    def wer(reference: str, hypothesis: str) -> float:
        return word_error_rate([reference], [hypothesis]).wer

    counts = {"requests": 0, "verbatim": 0, "worse": 0, "better": 0, "shorter_by_3_words": 0}
    worse = []
    for key, truth in truths.items():
        if key not in whisper or key not in lsm:
            continue
        heard, said = whisper[key].strip(), lsm[key].strip()
        counts["requests"] += 1
        counts["verbatim"] += said == heard
        counts["shorter_by_3_words"] += len(said.split()) < len(heard.split()) - 2
        if wer(truth, said) > wer(truth, heard):
            counts["worse"] += 1
            worse.append({"truth": truth, "whisper": heard, "lsm": said})
        counts["better"] += wer(truth, said) < wer(truth, heard)
    return {**counts, "worse_examples": worse[:examples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_output", type=Path, help="a `selfpowered eval --output` folder")
    parser.add_argument("systems", nargs="+", help="LSM names in that eval")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    report = json.loads((args.eval_output / "report.json").read_text())
    truths = {query["key"]: query["transcript"] for query in report["suites"]["asr"]["queries"]}
    whisper = answers(args.eval_output, "cascade")
    summary = {"eval": str(args.eval_output), "systems": {}}
    for system in args.systems:
        summary["systems"][system] = compare(truths, whisper, answers(args.eval_output, system))
    emit(summary, args.out, started)


if __name__ == "__main__":
    main()
