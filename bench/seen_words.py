"""Which reference words a system recovers, split by whether the word occurs in the training
transcripts (`eval` measures this for every system with its `asr.vocabulary` setting; this script
reads the hypotheses of other tools too): a connector that learnt a mapping only for the words it
was trained on recovers seen words and misses unseen ones; a reader that generalises (Whisper)
misses both alike.

Reads hypothesis files as `bench/ctc_wer.py --all` and `bench/decoder_states_wer.py --all` write
them ({manifest: {"examples": [{"ref", "hyp"}, ...]}}). Words are compared after the Whisper
English normaliser; a reference word counts as recovered when the alignment matches it.

    .venv/bin/python bench/seen_words.py --train demo-output/aug/train.vanilla-1500.jsonl \\
        --hyps head=bench/results/ood_recipe/D0.ctc_wer.json whisper=bench/results/ood_recipe/decoder-states.wer.json

An LSM's transcriptions come from an `eval` run's answer cache (OUTPUT/predictions/SYSTEM/asr@SET.json),
the references from the set's manifest:

    .venv/bin/python bench/seen_words.py --train ... --eval BS=demo-output/exp/eval-B/predictions/BS \\
        --sets ood=demo-output/ood/test.jsonl real=demo-output/real/real.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selfpowered.text.metrics import normalize_english, recovered_words


def eval_hypotheses(predictions: Path, sets: dict[str, str]) -> dict[str, dict]:
    """An eval answer cache's ASR answers on each set ({manifest: {"examples": [{"ref", "hyp"}]}}):
    answers are keyed `<utterance id>#asr`, the references come from the set's manifest."""
    out = {}
    for name, manifest in sets.items():
        cached = json.loads((predictions / f"asr@{name}.json").read_text())
        refs = {}
        for line in Path(manifest).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                refs[row["id"]] = row.get("transcript") or row.get("text") or ""
        examples = [
            {"ref": refs[key.rsplit("#", 1)[0]], "hyp": answer}
            for key, answer in zip(cached["keys"], cached["answers"])
        ]
        out[manifest] = {"examples": examples}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", required=True, help="the training files (their transcripts)")
    parser.add_argument("--hyps", nargs="*", default=[], help="NAME=hypotheses.json")
    parser.add_argument("--eval", nargs="*", default=[], help="NAME=an eval run's predictions/SYSTEM folder")
    parser.add_argument("--sets", nargs="*", default=[], help="SET=manifest for --eval (its asr@SET answers)")
    parser.add_argument("--out", default=None, help="write the numbers here as JSON")
    args = parser.parse_args()
    vocabulary: set[str] = set()
    for path in args.train:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                vocabulary.update(normalize_english(row.get("transcript") or row.get("text") or "").split())
    results: dict[str, dict] = {}
    sources = [(item.partition("=")[0], json.loads(Path(item.partition("=")[2]).read_text())) for item in args.hyps]
    sets = dict(item.split("=", 1) for item in args.sets)
    sources += [(item.partition("=")[0], eval_hypotheses(Path(item.partition("=")[2]), sets)) for item in args.eval]
    for name, hypotheses in sources:
        for manifest, numbers in hypotheses.items():
            counts = {"seen": [0, 0], "unseen": [0, 0]}  # [recovered, total]
            for example in numbers["examples"]:
                for word, hit in recovered_words(example["ref"], example["hyp"]):
                    bucket = counts["seen" if word in vocabulary else "unseen"]
                    bucket[0] += hit
                    bucket[1] += 1
            row = {
                kind: {"recall": round(hits / total, 4) if total else None, "words": total}
                for kind, (hits, total) in counts.items()
            }
            results.setdefault(manifest, {})[name] = row
            print(
                f"{manifest} {name}: seen words recovered {row['seen']['recall']} of {row['seen']['words']}, "
                f"unseen {row['unseen']['recall']} of {row['unseen']['words']}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
