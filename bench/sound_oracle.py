"""Can the LLM itself answer the sound questions when it is *told* the answer in words?

The upper bound of any speech path that hands the frozen LLM a description: SmolLM2-135M-Instruct in
text mode, asked the `paraling` suite's closed questions (paraling-heldout wordings) about the dev
pairs, with the clip's **true** labels in the prompt as `text.paraling.describe` words them:

- `plain`: the cascade's prompt, `"{instruction}: {transcript}"` (no labels: chance, 0.5)
- `sound_prompt`: augmentation's own prompt for sound answers (`text.paraling.sound_prompt`)
- `tagged`: what a tagged LSM reads: the transcript, then "How it sounds: ..." (model/sound_tags.py)

Each scored as the suite scores it: the greedy answer read back by `parse`, and the likeliest option
(model/choosing.py). Dev pairs only (recipe choices are made there).

    .venv/bin/python bench/sound_oracle.py --out bench/results/sound/oracle.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from report import emit

from selfpowered.config import LimitsConfig
from selfpowered.corpus.manifest import read_manifest
from selfpowered.model.choosing import choose_all
from selfpowered.model.engine import Request
from selfpowered.model.generation import HFGenerator
from selfpowered.model.sound_tags import SOUND_PREFIX
from selfpowered.text.paraling import EVAL_VALUES, describe, parse, sound_prompt, value_of
from selfpowered.text.tasks import TaskLibrary, text_prompt

PROMPTS = {
    "plain": lambda instruction, text, labels: text_prompt(instruction, text),
    "sound_prompt": sound_prompt,
    "tagged": lambda instruction, text, labels: text_prompt(instruction, f"{text}\n{SOUND_PREFIX}{describe(labels)}"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-output/paraling/dev.jsonl")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    library = TaskLibrary.load("paraling-heldout")
    tasks = {task.attribute: task for task in library.tasks if task.options}
    rows = read_manifest(Path(args.data), LimitsConfig(check_audio=False)).rows
    items = []  # (attribute, truth, instruction, transcript, labels)
    for row in rows:
        labels = row.extra.get("labels", {})
        attribute = labels.get("designed_for")
        if attribute in tasks:
            task = tasks[attribute]
            items.append((attribute, value_of(attribute, labels), task.templates[0], row.text, labels, task.options))
    generator = HFGenerator("smollm2-135m-instruct", max_new_tokens=40)
    result: dict = {"data": args.data, "items": len(items), "prompts": {}}
    for name, make in PROMPTS.items():
        prompts = [make(instruction, text, labels) for _, _, instruction, text, labels, _ in items]
        answers = generator.answers(prompts)
        requests = [Request(generator.model_id, prompt) for prompt in prompts]
        chosen = choose_all(generator.served, requests, [list(item[5]) for item in items])
        scores: dict = defaultdict(lambda: {"parsed": 0, "likeliest": 0, "n": 0, "likeliest_values": Counter()})
        for (attribute, truth, *_), answer, option in zip(items, answers, chosen):
            score = scores[attribute]
            score["n"] += 1
            score["parsed"] += parse(attribute, answer, EVAL_VALUES[attribute]) == truth
            picked = parse(attribute, option, EVAL_VALUES[attribute])
            score["likeliest"] += picked == truth
            score["likeliest_values"][picked] += 1
        result["prompts"][name] = {
            attribute: {"n": s["n"], "parsed": round(s["parsed"] / s["n"], 3),
                        "likeliest": round(s["likeliest"] / s["n"], 3), "likeliest_values": dict(s["likeliest_values"])}
            for attribute, s in scores.items()
        }  # fmt: skip
        result["prompts"][name]["example"] = {"prompt": prompts[0], "answer": answers[0]}
        print(name, json.dumps(result["prompts"][name]), flush=True)
    emit(result, args.out, started)


if __name__ == "__main__":
    main()
