"""Can an LSM tell from the instruction alone whether it asks how the clip sounds?

Issue 33's dev runs (bench/RESULTS.md, "Sound tags") found that the sound tagger's line after the
transcript carries the sound into a frozen LLM's answers but costs every other task (untrained-task
chrF 46.3 -> 32.7), so the tagger's judge (model/sound_tags.InstructionJudge) shows the line only
when the instruction is about the sound. This scores that judge alone, exactly as `selfpowered tag`
fits it (train/sound_tagger.fit_judge): fitted on the *training* libraries' wordings over the frozen
LLM's input embeddings (sound: paraling, paraling-closed; not sound: demo, paper, demo-ifeval),
scored on libraries it never saw (sound: paraling-heldout; not sound: content, demo-heldout,
paper-heldout) - the eval's own wordings.

    .venv/bin/python bench/instruction_router.py --out bench/results/sound/instruction_router.json
"""

from __future__ import annotations

import argparse
import time

import torch
from report import emit
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfpowered.assets import resolve_model
from selfpowered.train.sound_tagger import fit_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    path = resolve_model("smollm2-135m-instruct", kind="llm")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    with torch.no_grad():
        table = AutoModelForCausalLM.from_pretrained(str(path)).get_input_embeddings().weight.float().numpy()
    _, summary = fit_judge(tokenizer, table)
    emit(summary, args.out, started)


if __name__ == "__main__":
    main()
