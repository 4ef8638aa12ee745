"""Do a model's option scores move with how the clip sounds, under a prior that always wins?

The `paraling-choice` suite answers each closed sound question with the likeliest option as the
answer's first words (model/choosing.py). On the shipped test report every system picks one
value for almost every clip of an attribute (self-powered LSM: "male" 78 of 80, "clean" 102 of
102), so that score sits at 0.5 even for a model whose decoded answers are right 0.6 of the time:
a prior over the option words swamps whatever the clip changes. This reads the same option
log-likelihoods and scores them two ways:

- raw: the likeliest option (what the suite's score does);
- batch-calibrated: each option's score minus its mean over the clips of the same question (set,
  attribute), then the likeliest (Zhou et al., "Batch Calibration", ICLR 2024). The mean is the
  model's prior for that question; what is left is how this clip moved it. The suite's clips are
  label-balanced pairs (one sentence under both values), so a system that hears nothing - the text
  LLM, whose two prompts of a pair are the same - stays at chance.

A diagnostic on dev, not a score of the report:

    .venv/bin/python bench/option_calibration.py --data demo-output/paraling/dev.jsonl \\
        -m selfpowered=checkpoints/demo/selfpowered -m vanilla=checkpoints/demo/vanilla \\
        --out bench/results/sound/option_calibration.json
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from report import emit

from selfpowered.assets import DEFAULT_LLM
from selfpowered.corpus.manifest import read_manifest
from selfpowered.evaluate.suites.paraling import closed_suite, paraling_suite
from selfpowered.evaluate.systems import CascadeSystem, Listening, LSMSystem, TextSystem
from selfpowered.model.choosing import option_logprobs
from selfpowered.text.paraling import EVAL_VALUES, parse
from selfpowered.text.tasks import TaskLibrary

BATCH = 16


def scores_of(system, queries) -> np.ndarray:
    """(queries, options) log p(option | prompt), after the prompts the system's `choose` scores."""
    served, requests = system.closed_prompts(queries)
    rows = []
    for start in range(0, len(requests), BATCH):
        part = slice(start, start + BATCH)
        rows += option_logprobs(served, requests[part], [q.options for q in queries[part]])
    return np.array(rows, dtype=np.float64)


def accuracies(scores: np.ndarray, queries, meta) -> dict:
    """Per (set, attribute): raw and batch-calibrated accuracy, and how often each value was chosen."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, item in enumerate(meta):
        groups[(item["set"], item["attribute"])].append(index)
    out = {}
    for (name, attribute), members in sorted(groups.items()):
        block = scores[members]
        calibrated = block - block.mean(axis=0, keepdims=True)
        result = {"n": len(members)}
        for label, values in (("raw", block), ("calibrated", calibrated)):
            chosen = [queries[i].options[int(np.argmax(row))] for i, row in zip(members, values)]
            said = [parse(attribute, option, EVAL_VALUES[attribute]) for option in chosen]
            right = [s == meta[i]["truth"] for s, i in zip(said, members)]
            result[label] = round(float(np.mean(right)), 4)
            result[f"{label}_answered"] = {value: said.count(value) for value in sorted(set(map(str, said)))}
        out[f"{name} / {attribute}"] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="paraling pairs (corpus synth --size paraling), e.g. dev")
    parser.add_argument("-m", "--model", action="append", default=[], help="NAME=CHECKPOINT (repeatable)")
    parser.add_argument("--baselines", nargs="*", default=["cascade", "text"], choices=["cascade", "text"])
    parser.add_argument("--hearing-cache", default="demo-output/hearing/option-calibration")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    library = TaskLibrary.load("paraling-heldout")
    rows = read_manifest(args.data).rows
    suite = closed_suite(paraling_suite({"dev": (rows, Path(args.data).parent)}, library), library)
    listening = Listening(DEFAULT_LLM, "whisper-tiny.en", "cpu", args.hearing_cache)
    summary: dict = {"data": args.data, "questions": len(suite.queries), "systems": {}}
    baselines = {"cascade": CascadeSystem, "text": TextSystem}
    systems = [LSMSystem(*spec.split("=", 1), 1, BATCH, "cpu", 0, listening) for spec in args.model]
    systems += [baselines[name](listening, 1, BATCH) for name in args.baselines]
    for system in systems:
        summary["systems"][system.name] = accuracies(scores_of(system, suite.queries), suite.queries, suite.meta)
        if system.kind == "lsm":
            system.release()
    emit(summary, args.out, started)


if __name__ == "__main__":
    main()
