"""Sound tags: how a clip sounds, read from Whisper's encoder states and written as words the LLM
already reads.

Issue 33's experiments showed the labels are *in* Whisper's states (a linear probe reads pace and
room at ~1.0, background ~0.9 on held-out voices), yet eight trained soft slots never carried a
per-clip value into SmolLM2-135M's answers. So this path makes the value explicit: one linear
classifier per attribute over the clip's pooled states (mean and std over its real frames: the
std lets a linear map see a change of voice), fitted on labels that are true by construction (the
paralinguistic corpus records what was done to each clip; no teacher), and its predictions become
the same plain-text line augmentation showed the LLM when it wrote its answers about sound
(`text.paraling.describe`: "voice: a woman's voice; pace: fast; ..."). The processor appends that
line to what Whisper heard, so training, evaluation and serving read one prompt.

The tagger is a processor part (like a feature extractor's statistics): ~16,000 numbers in
`sound_tagger.json` beside `processor_config.json`, applied on the host without gradients.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfpowered.atomic import atomic_write_text
from selfpowered.errors import SelfPoweredError
from selfpowered.text.paraling import VALUES, describe, value_of

TAGGER_FILE = "sound_tagger.json"
TAGGED_ATTRIBUTES = ("gender", "pace", "background", "room", "speakers")  # what `describe` words
MIN_PER_VALUE = 5  # fewer examples of a value than this and the attribute's classifier is not fitted
SOUND_PREFIX = "How it sounds: "  # what the LLM reads before the tags (text.paraling.sound_prompt's words)


def pooled_states(states: np.ndarray) -> np.ndarray:
    """(frames, d) encoder states -> (2 d,): mean and std over the frames (zeros for no frames)."""
    states = np.asarray(states, dtype=np.float32)
    if states.ndim != 2:
        raise ValueError(f"encoder states must be (frames, d), got shape {states.shape}")
    if states.shape[0] == 0:
        return np.zeros(2 * states.shape[1], np.float32)
    return np.concatenate([states.mean(0), states.std(0)])


@dataclass
class AttributeClassifier:
    """A standardised multinomial logistic regression over pooled states, for one attribute."""

    values: tuple[str, ...]
    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    weight: np.ndarray  # (values, features)
    bias: np.ndarray  # (values,)

    def predict(self, features: np.ndarray) -> list[str]:
        logits = ((features - self.mean) / self.scale) @ self.weight.T + self.bias
        return [self.values[i] for i in logits.argmax(axis=-1)]

    @classmethod
    def fit(cls, features: np.ndarray, labels: Sequence[str], l2: float = 1e-2) -> AttributeClassifier:
        """Full-batch L-BFGS on the cross-entropy plus `l2` x the squared weights (deterministic)."""
        values = tuple(sorted(set(labels)))
        mean = features.mean(0)
        scale = features.std(0) + 1e-6
        x = torch.from_numpy((features - mean) / scale).double()
        y = torch.tensor([values.index(label) for label in labels])
        weight = torch.zeros(len(values), x.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(len(values), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + l2 * weight.pow(2).sum()
            value.backward()
            return value

        optimizer.step(loss)
        return cls(values, mean, scale, weight.detach().float().numpy(), bias.detach().float().numpy())

    def to_dict(self) -> dict:
        return {"values": list(self.values), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weight": self.weight.tolist(), "bias": self.bias.tolist()}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> AttributeClassifier:
        arrays = {key: np.asarray(data[key], dtype=np.float32) for key in ("mean", "scale", "weight", "bias")}
        classifier = cls(tuple(data["values"]), **arrays)
        if classifier.weight.shape != (len(classifier.values), classifier.mean.shape[0]):
            raise ValueError(f"weight shape {classifier.weight.shape} does not fit {len(classifier.values)} values")
        return classifier


class SoundTagger:
    """One `AttributeClassifier` per attribute; `line(states)` is the text the LLM reads."""

    def __init__(self, classifiers: dict[str, AttributeClassifier], hidden_size: int) -> None:
        self.classifiers, self.hidden_size = classifiers, hidden_size

    def tags(self, states: np.ndarray | None) -> dict[str, str]:
        """The predicted value of each attribute for one clip's (frames, d) states ({} for none)."""
        if states is None or len(states) == 0:
            return {}
        if states.shape[-1] != self.hidden_size:
            raise ValueError(f"sound tagger fitted on {self.hidden_size}-wide states, got {states.shape[-1]}")
        features = pooled_states(states)[None]
        return {name: classifier.predict(features)[0] for name, classifier in self.classifiers.items()}

    def line(self, states: np.ndarray | None) -> str:
        """What the LLM reads about how the clip sounds ("" when nothing is tagged)."""
        tags = self.tags(states)
        return f"{SOUND_PREFIX}{describe(tags)}" if tags else ""

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: Sequence[dict], hidden_size: int, l2: float = 1e-2
    ) -> tuple[SoundTagger, dict]:
        """Fit on `features` ((clips, 2 d): `pooled_states` of each clip) and each clip's labels,
        every attribute that has at least `MIN_PER_VALUE` clips of two or more values. Returns the
        tagger and, per attribute, how many clips of each value it learnt from."""
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} clips but {len(labels)} label sets")
        if features.ndim != 2 or features.shape[1] != 2 * hidden_size:
            raise ValueError(f"features must be (clips, {2 * hidden_size}), got {features.shape}")
        classifiers, counts = {}, {}
        for attribute in TAGGED_ATTRIBUTES:
            known = [(i, value_of(attribute, row)) for i, row in enumerate(labels)]
            tally = {value: sum(v == value for _, v in known) for value in VALUES[attribute]}
            tally = {value: count for value, count in tally.items() if count >= MIN_PER_VALUE}
            counts[attribute] = tally
            if len(tally) < 2:
                continue
            rows = [(i, value) for i, value in known if value in tally]
            classifiers[attribute] = AttributeClassifier.fit(
                features[[i for i, _ in rows]], [value for _, value in rows], l2
            )
        if not classifiers:
            raise SelfPoweredError(
                f"sound tagger: no attribute has {MIN_PER_VALUE}+ clips of two values among {len(labels)} labelled "
                "clips (a manifest with `labels`, e.g. `corpus synth --size paraling`'s train split)"
            )
        return cls(classifiers, hidden_size), counts

    # -- saved with the processor -------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        data = {"hidden_size": self.hidden_size, "pooling": "mean+std",
                "classifiers": {name: c.to_dict() for name, c in self.classifiers.items()}}  # fmt: skip
        atomic_write_text(Path(folder) / TAGGER_FILE, json.dumps(data) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> SoundTagger | None:
        """The tagger saved in `folder`, None when it has none."""
        path = Path(folder) / TAGGER_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            classifiers = {name: AttributeClassifier.from_dict(c) for name, c in data["classifiers"].items()}
            unknown = set(classifiers) - set(TAGGED_ATTRIBUTES)
            if unknown:
                raise ValueError(f"unknown attributes {sorted(unknown)}")
            hidden_size = int(data["hidden_size"])
            for name, classifier in classifiers.items():
                if classifier.mean.shape != (2 * hidden_size,):
                    raise ValueError(f"{name}: {classifier.mean.shape[0]} features, not mean+std of {hidden_size}")
            return cls(classifiers, hidden_size)
        except (ValueError, KeyError, TypeError) as error:
            raise SelfPoweredError(f"{path}: not a sound tagger ({error})") from error
