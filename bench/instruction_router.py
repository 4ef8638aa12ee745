"""Can an LSM tell from the instruction alone whether it asks how the clip sounds?

Issue 33's dev runs (bench/RESULTS.md, "Sound tags") found that the sound tagger's line after the
transcript carries the sound into a frozen LLM's answers but costs every other task (untrained-task
chrF 46.3 -> 32.7), so the next design shows the line only when the instruction is about the sound.
This measures the judge such a design needs, before building it: a standardised logistic regression
over the frozen LLM's own input embeddings of the instruction (mean over its tokens), fitted on the
*training* libraries' wordings (sound: paraling, paraling-closed; not sound: demo, paper,
demo-ifeval) and scored on libraries it never saw (sound: paraling-heldout; not sound: content,
demo-heldout, paper-heldout) - the eval's own wordings.

    .venv/bin/python bench/instruction_router.py --out bench/results/sound/instruction_router.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from report import emit
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfpowered.assets import resolve_model
from selfpowered.model.sound_tags import AttributeClassifier
from selfpowered.text.tasks import TaskLibrary

TRAIN = {"sound": ("paraling", "paraling-closed"), "other": ("demo", "paper", "demo-ifeval")}
HELD_OUT = {"sound": ("paraling-heldout",), "other": ("content", "demo-heldout", "paper-heldout")}


def wordings(libraries: tuple[str, ...]) -> list[str]:
    return sorted({t for name in libraries for task in TaskLibrary.load(name).tasks for t in task.templates})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    path = resolve_model("smollm2-135m-instruct", kind="llm")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    table = AutoModelForCausalLM.from_pretrained(str(path)).get_input_embeddings().weight.detach()

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([table[tokenizer(t.lower())["input_ids"]].mean(0).numpy() for t in texts])

    def split(libraries: dict) -> tuple[list[str], list[str]]:
        texts, labels = [], []
        for label, names in libraries.items():
            found = wordings(names)
            texts += found
            labels += [label] * len(found)
        return texts, labels

    train_texts, train_labels = split(TRAIN)
    test_texts, test_labels = split(HELD_OUT)
    overlap = set(train_texts) & set(test_texts)
    with torch.no_grad():
        judge = AttributeClassifier.fit(embed(train_texts), train_labels, l2=1e-2)
        predicted = judge.predict(embed(test_texts))
    result: dict = {"train": {label: sum(x == label for x in train_labels) for label in TRAIN},
                    "held_out": {label: sum(x == label for x in test_labels) for label in HELD_OUT},
                    "shared_wordings": len(overlap), "per_class": {}, "mistakes": []}  # fmt: skip
    for label in HELD_OUT:
        chosen = [i for i, x in enumerate(test_labels) if x == label]
        result["per_class"][label] = round(float(np.mean([predicted[i] == label for i in chosen])), 3)
    result["mistakes"] = [
        {"wording": text, "truth": truth}
        for text, truth, guess in zip(test_texts, test_labels, predicted)
        if guess != truth
    ]
    emit(result, args.out, started)


if __name__ == "__main__":
    main()
