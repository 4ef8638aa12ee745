"""Where in Whisper tiny.en is what a transcript cannot carry? A linear probe per encoder layer and
attribute, fitted on the paralinguistic corpus's training voices, scored on held-out voices.

Features per clip: the encoder states over the real frames, mean- and std-pooled (the std lets a
linear map see a change of voice), for every layer of transformers' Whisper encoder over the 30 s
window (embeddings, blocks 1-4), and `hearing` = what the LSM's slots read: model.hearing's
CTranslate2 states (last layer, speech + 10 s window). Standardised logistic regression (C 0.1),
fitted on `--train` clips of the train split, scored on the dev pairs (where a layer is chosen)
and the test pairs (reported).

    .venv/bin/python bench/acoustic_probe.py --out bench/results/sound/acoustic_probe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from report import emit

from selfpowered.assets import resolve_model
from selfpowered.audio import load_audio
from selfpowered.config import LimitsConfig
from selfpowered.corpus.manifest import read_manifest
from selfpowered.model.hearing import WhisperHearing
from selfpowered.model.sound_tags import pooled_states
from selfpowered.text.paraling import EVAL_VALUES, value_of

ATTRIBUTES = ("gender", "pace", "background", "room", "speakers")


def features(rows, base: Path, encoder, extractor, hearing) -> np.ndarray:
    """(clips, layers + 1, 2 d): pooled states of each encoder layer, then the hearing states."""
    out = []
    for row in rows:
        audio = load_audio(row.audio_path(base))
        inputs = extractor(audio, sampling_rate=16_000, return_tensors="pt").input_features
        with torch.no_grad():
            layers = encoder(inputs, output_hidden_states=True).hidden_states
        frames = max(1, int(len(audio) / 16_000 * 50))
        per_layer = [pooled_states(layer[0, :frames].numpy()) for layer in layers]
        per_layer.append(pooled_states(hearing.hear([audio])[0].states))
        out.append(np.stack(per_layer))
    return np.stack(out)


def labelled(rows, attribute: str, designed: bool) -> list[int]:
    """Indices of rows with a value of `attribute` (test pairs: only the attribute they were made for)."""
    keep = []
    for index, row in enumerate(rows):
        labels = row.extra.get("labels", {})
        value = value_of(attribute, labels)
        if value in EVAL_VALUES[attribute] and (not designed or labels.get("designed_for") == attribute):
            keep.append(index)
    return keep


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import WhisperFeatureExtractor, WhisperModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="demo-output/paraling")
    parser.add_argument("--train", type=int, default=1200, help="training clips (the first N of the train split)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    path = resolve_model("whisper-tiny.en", kind="encoder")
    encoder = WhisperModel.from_pretrained(str(path)).encoder.eval()
    extractor = WhisperFeatureExtractor.from_pretrained(str(path))
    hearing = WhisperHearing("whisper-tiny.en")
    limits = LimitsConfig(check_audio=False)
    corpus = Path(args.corpus)
    splits = {name: read_manifest(corpus / f"{name}.jsonl", limits).rows for name in ("train", "dev", "test")}
    splits["train"] = splits["train"][: args.train]
    x = {name: features(rows, corpus, encoder, extractor, hearing) for name, rows in splits.items()}
    layer_names = [f"layer {i}" if i else "embeddings" for i in range(x["train"].shape[1] - 1)] + ["hearing"]
    result: dict = {"train_clips": len(splits["train"]), "layers": layer_names, "attributes": {}}
    for attribute in ATTRIBUTES:
        train = labelled(splits["train"], attribute, designed=False)
        y_train = [value_of(attribute, splits["train"][i].extra["labels"]) for i in train]
        scores = {}
        for split in ("dev", "test"):
            chosen = labelled(splits[split], attribute, designed=True)
            y = np.array([value_of(attribute, splits[split][i].extra["labels"]) for i in chosen])
            accuracies = []
            for layer in range(x["train"].shape[1]):
                probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
                probe.fit(x["train"][train, layer], y_train)
                accuracies.append(round(float((probe.predict(x[split][chosen, layer]) == y).mean()), 3))
            scores[split] = {"n": len(chosen), "accuracy_by_layer": dict(zip(layer_names, accuracies))}
        result["attributes"][attribute] = scores
        print(attribute, json.dumps(scores), flush=True)
    emit(result, args.out, started)


if __name__ == "__main__":
    main()
