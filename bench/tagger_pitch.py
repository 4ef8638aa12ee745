"""Would the sound tagger tell gender and speaker count better with the voice's pitch beside
Whisper's states?

The shipped tagger (model/sound_tags.py) reads one thing: the mean and std of Whisper tiny.en's
last encoder layer over the clip. On the paraling dev pairs (held-out voices) it names pace, noise
and room at 0.93-1.0 but gender at 0.825 and one-vs-two speakers at 0.75 - the two attributes a
voice's fundamental frequency (F0) speaks to most directly: its level (gender), and a jump of it
halfway through the clip (the corpus's two-speaker clips are one voice after another). This fits
the tagger's own classifier (`AttributeClassifier`, same regularisation) on the same train clips
four ways - Whisper's pooled states alone (what ships), pitch features alone, both in one
classifier, and the two single-source classifiers' log-probabilities added (late fusion) - and
scores each on the dev pairs.

Pitch: a plain autocorrelation tracker (40 ms frames, 10 ms hop, 60-400 Hz, a frame voiced when
its normalised autocorrelation peak is above 0.5); per clip the log-F0 quantiles (10/50/90%), its
spread, the voiced share, and the difference of median log-F0 between the clip's two halves.

    .venv/bin/selfpowered corpus synth demo-output/paraling --size paraling --split train \\
        --set 'max_utterances={train: 1500}'
    .venv/bin/python bench/tagger_pitch.py --train demo-output/paraling/train.jsonl \\
        --dev demo-output/paraling/dev.jsonl --out bench/results/sound/tagger_pitch.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from report import emit

from selfpowered.audio import SAMPLE_RATE, load_audio
from selfpowered.model.sound_tags import TAGGED_ATTRIBUTES, AttributeClassifier
from selfpowered.text.paraling import value_of
from selfpowered.train.sound_tagger import labelled_clips, pooled_clips

FRAME, HOP = int(0.040 * SAMPLE_RATE), int(0.010 * SAMPLE_RATE)
LAGS = (SAMPLE_RATE // 400, SAMPLE_RATE // 60)  # 400 Hz .. 60 Hz
VOICED = 0.5  # normalised autocorrelation peak


def pitch_track(samples: np.ndarray) -> np.ndarray:
    """log F0 of every voiced frame, in time order (empty when none is voiced)."""
    if len(samples) < FRAME:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), FRAME)[::HOP]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).sum(axis=1)
    loud = energy > 0.05 * np.median(energy[energy > 0]) if np.any(energy > 0) else energy > 0
    spectrum = np.fft.rfft(frames, n=2 * FRAME, axis=1)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : LAGS[1] + 1]
    normalised = autocorrelation / np.maximum(autocorrelation[:, :1], 1e-12)
    window = normalised[:, LAGS[0] : LAGS[1] + 1]
    best = window.argmax(axis=1)
    peak = window[np.arange(len(window)), best]
    voiced = loud & (peak > VOICED)
    return np.log(SAMPLE_RATE / (best[voiced] + LAGS[0]))


def pitch_features(samples: np.ndarray) -> np.ndarray:
    """(7,): log-F0 10/50/90% quantiles, its std, the voiced share, and the jump of the median
    between the clip's halves (absolute and signed)."""
    track = pitch_track(samples)
    frames = max(1, (len(samples) - FRAME) // HOP + 1)
    if len(track) < 4:
        return np.array([np.log(150.0)] * 3 + [0.0, len(track) / frames, 0.0, 0.0])
    half = len(track) // 2
    jump = float(np.median(track[half:]) - np.median(track[:half]))
    quantiles = np.quantile(track, [0.1, 0.5, 0.9])
    return np.array([*quantiles, track.std(), len(track) / frames, abs(jump), jump])


def features(hearing, clips: list[tuple[Path, dict]]) -> tuple[np.ndarray, np.ndarray]:
    """Whisper's pooled states (what the tagger reads) and the pitch features of every clip."""
    pooled = np.concatenate(pooled_clips(hearing, clips))
    return pooled, np.stack([pitch_features(load_audio(path)) for path, _ in clips])


def scores(train: tuple, dev: tuple) -> dict:
    """Per attribute and feature set: dev accuracy on the clips designed for that attribute."""
    (train_states, train_pitch, train_labels), (dev_states, dev_pitch, dev_labels) = train, dev
    sets = {
        "whisper states (shipped)": (train_states, dev_states),
        "pitch only": (train_pitch, dev_pitch),
        "states + pitch": (np.hstack([train_states, train_pitch]), np.hstack([dev_states, dev_pitch])),
    }
    out: dict = {}
    for attribute in TAGGED_ATTRIBUTES:
        fit_rows = [(i, value_of(attribute, row)) for i, row in enumerate(train_labels)]
        fit_rows = [(i, value) for i, value in fit_rows if value is not None]
        values = {value for _, value in fit_rows}
        dev_rows = [(i, value_of(attribute, row)) for i, row in enumerate(dev_labels)
                    if row.get("designed_for") == attribute]  # fmt: skip
        dev_rows = [(i, value) for i, value in dev_rows if value in values]
        if len(values) < 2 or not dev_rows:
            continue
        out[attribute] = {"n": len(dev_rows)}
        fused = []
        for name, (fit_x, dev_x) in sets.items():
            classifier = AttributeClassifier.fit(fit_x[[i for i, _ in fit_rows]], [v for _, v in fit_rows])
            x = dev_x[[i for i, _ in dev_rows]]
            predicted = classifier.predict(x)
            out[attribute][name] = round(float(np.mean([p == v for p, (_, v) in zip(predicted, dev_rows)])), 3)
            if name != "states + pitch":
                fused.append((classifier, log_probabilities(classifier, x)))
        # late fusion: the two single-source classifiers' log-probabilities added (their values agree)
        values = fused[0][0].values
        chosen = [values[i] for i in (fused[0][1] + fused[1][1]).argmax(axis=1)]
        out[attribute]["states, pitch: late fusion"] = round(
            float(np.mean([p == v for p, (_, v) in zip(chosen, dev_rows)])), 3
        )
    return out


def log_probabilities(classifier: AttributeClassifier, x: np.ndarray) -> np.ndarray:
    """(clips, values) log-softmax of the classifier's logits."""
    logits = classifier.logits(x)
    logits = logits - logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--dev", required=True)
    parser.add_argument("--limit", type=int, default=None, help="fit on the first N labelled train clips")
    parser.add_argument("--checkpoint", default="checkpoints/demo/selfpowered", help="whose hearing settings")
    parser.add_argument("--cache", default="demo-output/hearing/train", help="hearing cache folder")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    from selfpowered.model import SpeechLM

    hearing = SpeechLM.from_pretrained(args.checkpoint).new_hearing(cache_dir=args.cache)
    train_clips, _ = labelled_clips([args.train], args.limit)
    dev_clips, _ = labelled_clips([args.dev], None)
    train = (*features(hearing, train_clips), [labels for _, labels in train_clips])
    dev = (*features(hearing, dev_clips), [labels for _, labels in dev_clips])
    summary = {"train": args.train, "train_clips": len(train_clips), "dev": args.dev, "dev_clips": len(dev_clips),
               "dev_accuracy": scores(train, dev)}  # fmt: skip
    emit(summary, args.out, started)


if __name__ == "__main__":
    main()
