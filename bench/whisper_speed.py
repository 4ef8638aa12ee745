"""Whisper's greedy decode per clip: PyTorch (what the cascade and the LSMs ran before issue 34)
vs CTranslate2 float32 / int8 over the whole 30 s window, and int8 over the speech + 10 s
(`model.hearing`'s default, chosen on dev by bench/hearing_window.py), side by side in one run on
the same clips, with the WER of each on every test set and how many clips get the very same text.

    .venv/bin/python bench/whisper_speed.py --out bench/results/whisper_speed.json

The PyTorch rows are the two decoders the project had: transformers' `generate` on a 30 s window
(the cascade's `WhisperTranscriber`, kept here as the baseline) and the LSMs' own greedy loop over
the decoder states (`WhisperStateDecoder`, `speech_states: decoder`, padded with the log-mel floor).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from selfpowered.assets import resolve_model
from selfpowered.audio import LogMelExtractor, as_samples, chunk_samples, load_audio
from selfpowered.corpus.quality import sample_rows
from selfpowered.model.encoder import SpeechEncoder, featurize
from selfpowered.model.hearing import WhisperHearing
from selfpowered.text.metrics import word_error_rate

SETS = {
    "demo test": "demo-output/corpus/test.jsonl",
    "ood": "demo-output/ood/test.jsonl",
    "real": "demo-output/real/real.jsonl",
}


class TransformersWhisper:
    """The cascade's transcriber until issue 34: transformers' greedy `generate` per 30 s chunk."""

    def __init__(self, name: str) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        path = resolve_model(name, kind="encoder")
        self.processor = WhisperProcessor.from_pretrained(str(path))
        self.model = WhisperForConditionalGeneration.from_pretrained(str(path)).eval()

    @torch.no_grad()
    def transcribe(self, audio, batch_size: int = 8) -> list[str]:
        chunks, owners = [], []
        for index, item in enumerate(audio):
            for chunk in chunk_samples(as_samples(item)):
                chunks.append(chunk)
                owners.append(index)
        pieces = []
        for start in range(0, len(chunks), batch_size):
            batch = chunks[start : start + batch_size]
            features = self.processor(batch, sampling_rate=16_000, return_tensors="pt").input_features
            tokens = self.model.generate(features, max_new_tokens=220)
            pieces += [text.strip() for text in self.processor.batch_decode(tokens, skip_special_tokens=True)]
        texts = [""] * len(audio)
        for owner, piece in zip(owners, pieces):
            texts[owner] = f"{texts[owner]} {piece}".strip()
        return texts


class StateDecoderWhisper:
    """The LSMs' decoder until issue 34: `speech_states: decoder`, read back as text."""

    def __init__(self, name: str) -> None:
        from tokenizers import Tokenizer

        path = resolve_model(name, kind="encoder")
        self.encoder = SpeechEncoder.from_pretrained(path, 8.0).eval()
        self.mel = LogMelExtractor.from_pretrained(path)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))

    @torch.no_grad()
    def transcribe(self, audio, batch_size: int = 8) -> list[str]:
        texts = []
        for start in range(0, len(audio), batch_size):
            states, lengths = self.encoder(**featurize(self.mel, audio[start : start + batch_size]))
            ids = self.encoder.decoder.read_tokens(states, lengths)
            texts += [self.tokenizer.decode(row[:n].tolist()).strip() for row, n in zip(ids, lengths.tolist())]
        return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--per-set", type=int, default=100, help="clips drawn (seeded) from each set")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sets = {name: sample_rows(Path(path), args.per_set, 0) for name, path in SETS.items() if Path(path).is_file()}
    audio = {name: [load_audio(row.audio_path(Path(SETS[name]).parent)) for row in rows] for name, rows in sets.items()}
    decoders = {
        "pytorch generate (cascade before)": TransformersWhisper(args.model),
        "pytorch state decoder (LSMs before)": StateDecoderWhisper(args.model),
        "ctranslate2 float32, whole 30 s": WhisperHearing(args.model, compute_type="float32", window=None),
        "ctranslate2 int8, whole 30 s": WhisperHearing(args.model, compute_type="int8", window=None),
        "ctranslate2 int8, speech + 10 s (hearing's default)": WhisperHearing(args.model, compute_type="int8"),
    }
    rows, outputs = [], {}
    for name, decoder in decoders.items():
        decoder.transcribe(audio[next(iter(audio))][:2])  # warm-up (and CTranslate2's conversion)
        total_clips, total_seconds = 0, 0.0
        outputs[name] = {}
        row = {"decoder": name}
        for set_name, clips in audio.items():
            started = time.perf_counter()
            texts = decoder.transcribe(clips, args.batch_size)
            total_seconds += time.perf_counter() - started
            total_clips += len(clips)
            outputs[name][set_name] = texts
            row[f"wer {set_name}"] = round(word_error_rate([r.text for r in sets[set_name]], texts).wer, 4)
        row["s_per_clip"] = round(total_seconds / total_clips, 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["s_per_clip"]
    reference = "pytorch generate (cascade before)"
    for row in rows:
        row["speedup_vs_pytorch_generate"] = round(base / row["s_per_clip"], 2)
        row["same_text_as_pytorch_generate"] = round(
            sum(a == b for s in audio for a, b in zip(outputs[row["decoder"]][s], outputs[reference][s]))
            / sum(len(c) for c in audio.values()),
            4,
        )
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "clips": {name: len(clips) for name, clips in audio.items()},
        "batch_size": args.batch_size,
        "rows": rows,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
