"""CTC-greedy WER of an `align` stage's connector on any manifests, overall and per speaker.

The connector alone (no LLM), read through the CTC head the stage saved beside its checkpoint, or
through the head a `ctc_posterior` checkpoint carries (a tuned LSM: did its connector drift from
what `align` taught it?). Used to compare alignment recipes on the dev split and to record, never to choose by, their
out-of-domain numbers.

    .venv/bin/python bench/ctc_wer.py demo-output/align demo-output/diverse/dev.jsonl demo-output/ood/test.jsonl \\
        --cache demo-output/features/whisper-tiny.en
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from selfpowered.model import SpeechLM
from selfpowered.model.ctc import HEAD_FILE, CTCHead, find_head, head_transcripts
from selfpowered.model.processor import pad_states
from selfpowered.text.metrics import word_error_rate
from selfpowered.train.data import SpeechInstructionDataset, read_samples
from selfpowered.train.features import build_feature_cache, open_cache


def ctc_transcripts(model: SpeechLM, head: CTCHead, dataset: SpeechInstructionDataset) -> list[str]:
    out = []
    with torch.no_grad():
        for start in range(0, len(dataset), 16):
            items = [dataset[i] for i in range(start, min(start + 16, len(dataset)))]
            out += head_transcripts(model, head, *pad_states([item["states"] for item in items]))
    return out


def wer_report(manifest: str, samples: list, hypotheses: list[str], keep_all: bool, key: str = "wer") -> dict:
    """WER of `hypotheses` against the samples' transcripts, overall (under `key`) and per speaker
    (the manifest's `speaker` field), with every hypothesis (`keep_all`) or four examples."""
    references = [s.response for s in samples]
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
    by_id = {row["id"]: row.get("speaker", "?") for row in rows}
    speakers: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        speakers[by_id.get(sample.id, "?")].append(i)
    return {
        "utterances": len(samples),
        key: round(word_error_rate(references, hypotheses).wer, 4),
        "per_speaker": {
            s: round(word_error_rate([references[i] for i in idx], [hypotheses[i] for i in idx]).wer, 4)
            for s, idx in sorted(speakers.items())
        },
        "examples": [
            {"id": samples[i].id, "ref": references[i], "hyp": hypotheses[i]}
            for i in range(len(samples) if keep_all else min(4, len(samples)))
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "align",
        type=Path,
        help="an align stage's output folder (final/ + ctc_head.safetensors) or a ctc_posterior checkpoint",
    )
    parser.add_argument("manifests", nargs="+")
    parser.add_argument("--cache", required=True, help="feature cache folder of the encoder")
    parser.add_argument("--out", default=None, help="write the numbers here as JSON")
    parser.add_argument("--all", action="store_true", help="keep every hypothesis in --out, not four examples")
    args = parser.parse_args()
    checkpoint = args.align / "final" if (args.align / "final").is_dir() else args.align
    model = SpeechLM.from_pretrained(checkpoint).eval()
    head = find_head(model, checkpoint)
    if head is None:
        parser.error(f"{args.align}: no {HEAD_FILE} beside final/ and the checkpoint carries no CTC head")
    results = {}
    for manifest in args.manifests:
        samples = read_samples(manifest)
        build_feature_cache(model.encoder, model.mel, [s.audio for s in samples], args.cache)
        dataset = SpeechInstructionDataset(samples, open_cache(args.cache, model.encoder, model.mel))
        results[manifest] = wer_report(manifest, samples, ctc_transcripts(model, head, dataset), args.all, "ctc_wer")
        print(manifest, results[manifest]["ctc_wer"], results[manifest]["per_speaker"], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
