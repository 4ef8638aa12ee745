"""WER of Whisper's own reading of cached decoder states (`speech_states: decoder`): the ceiling of
what a connector over them can pass to the LLM, on any manifests, overall and per speaker.

Each cached state is the decoder's hidden state that predicted one text token; Whisper's tied
output layer (states x token embeddings) reads it back as that token. Encodes what is not cached.

    .venv/bin/python bench/decoder_states_wer.py demo-output/ood/test.jsonl demo-output/real/real.jsonl \\
        --cache demo-output/features/whisper-tiny.en-decoder --out bench/results/ood_recipe/decoder-states.wer.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from ctc_wer import wer_report  # bench/ is on the path when this runs as bench/decoder_states_wer.py
from transformers import AutoTokenizer

from selfpowered.assets import resolve_model
from selfpowered.audio import LogMelExtractor
from selfpowered.model.encoder import SpeechEncoder
from selfpowered.model.feature_cache import audio_key
from selfpowered.train.data import read_samples
from selfpowered.train.features import build_feature_cache, open_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+")
    parser.add_argument("--cache", required=True, help="the decoder-state feature cache")
    parser.add_argument("--encoder", default="whisper-tiny.en")
    parser.add_argument("--tokens-per-second", type=float, default=8.0, help="as the LSM's decoded_tokens_per_second")
    parser.add_argument("--out", default=None, help="write the numbers here as JSON")
    parser.add_argument("--all", action="store_true", help="keep every hypothesis in --out, not four examples")
    args = parser.parse_args()
    path = resolve_model(args.encoder, kind="encoder")
    encoder = SpeechEncoder.from_pretrained(path, args.tokens_per_second).eval()
    mel = LogMelExtractor.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    results = {}
    for manifest in args.manifests:
        samples = read_samples(manifest)
        build_feature_cache(encoder, mel, [s.audio for s in samples], args.cache)
        cache = open_cache(args.cache, encoder, mel)
        hypotheses = []
        for sample in samples:
            states = cache.get(audio_key(sample.audio)).float()
            ids = encoder.decoder.read_tokens(states[None], torch.tensor([states.shape[0]]))[0]
            hypotheses.append(tokenizer.decode(ids.tolist()).strip())
        results[manifest] = wer_report(manifest, samples, hypotheses, args.all)
        print(f"{manifest}: {len(samples)} utterances, WER of Whisper's own reading {results[manifest]['wer']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    with torch.no_grad():
        main()
