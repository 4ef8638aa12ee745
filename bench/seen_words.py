"""Which reference words a system recovers, split by whether the word occurs in the training
transcripts: a connector that learnt a mapping only for the words it was trained on recovers
seen words and misses unseen ones; a reader that generalises (Whisper) misses both alike.

Reads hypothesis files as `bench/ctc_wer.py --all` and `bench/decoder_states_wer.py --all` write
them ({manifest: {"examples": [{"ref", "hyp"}, ...]}}). Words are compared after the Whisper
English normaliser; a reference word counts as recovered when the alignment matches it.

    .venv/bin/python bench/seen_words.py --train demo-output/aug/train.vanilla-1500.jsonl \\
        --hyps head=bench/results/ood_recipe/D0.ctc_wer.json whisper=bench/results/ood_recipe/decoder-states.wer.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jiwer

from selfpowered.text.metrics import normalize_english


def recovered_words(reference: str, hypothesis: str) -> list[tuple[str, bool]]:
    """Each normalised reference word and whether the alignment matches it."""
    ref, hyp = normalize_english(reference), normalize_english(hypothesis)
    words = ref.split()
    if not words:
        return []
    hit = [False] * len(words)
    for chunk in jiwer.process_words(ref, hyp or "<empty>").alignments[0]:
        if chunk.type == "equal":
            for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
                hit[i] = True
    return list(zip(words, hit))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", required=True, help="the training files (their transcripts)")
    parser.add_argument("--hyps", nargs="+", required=True, help="NAME=hypotheses.json")
    parser.add_argument("--out", default=None, help="write the numbers here as JSON")
    args = parser.parse_args()
    vocabulary: set[str] = set()
    for path in args.train:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                vocabulary.update(normalize_english(row.get("transcript") or row.get("text") or "").split())
    results: dict[str, dict] = {}
    for item in args.hyps:
        name, _, path = item.partition("=")
        for manifest, numbers in json.loads(Path(path).read_text()).items():
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
