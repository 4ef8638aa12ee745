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

The line helps questions about the sound and costs every other task (issue 33's dev runs:
untrained-task chrF 46.3 -> 32.7 with the line always shown), so a tagger may carry an
`InstructionJudge`: a linear score of the instruction's tokens, fitted on the training libraries'
wordings, that says whether the instruction asks how the clip sounds. Only then is the line shown;
any other instruction gets the prompt the model reads without a tagger (for an LSM without slots,
the cascade's, token for token).

The tagger is a processor part (like a feature extractor's statistics): ~16,000 numbers (plus one
score per vocabulary token for the judge) in `sound_tagger.json` beside `processor_config.json`,
applied on the host without gradients.
"""

from __future__ import annotations

import itertools
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

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(clips, values) scores of each value (a softmax of them is the fitted probability)."""
        return ((features - self.mean) / self.scale) @ self.weight.T + self.bias

    def predict(self, features: np.ndarray) -> list[str]:
        return [self.values[i] for i in self.logits(features).argmax(axis=-1)]

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


def instruction_ids(tokenizer, instruction: str) -> list[int]:
    """The token ids the judge reads: the instruction lower-cased (case says nothing about the subject)."""
    return list(tokenizer(instruction.lower(), add_special_tokens=False)["input_ids"])


@dataclass
class InstructionJudge:
    """Does an instruction ask how the clip sounds? A logistic regression over the LLM's mean input
    embedding of the instruction's tokens, folded into one score per vocabulary token: the mean of
    a linear map is the linear map of the mean, so `score(ids)` is the regression's logit
    ("sound" minus "other") with no LLM at hand - the processor holds only the tokenizer."""

    token_scores: np.ndarray  # (vocabulary,)
    bias: float

    def score(self, ids: Sequence[int]) -> float:
        return float(self.token_scores[list(ids)].mean()) + self.bias if len(ids) else float("-inf")

    def about_sound(self, ids: Sequence[int]) -> bool:
        return self.score(ids) > 0

    @classmethod
    def fit(
        cls, embeddings: np.ndarray, sound: Sequence[Sequence[int]], other: Sequence[Sequence[int]], l2: float = 1e-2
    ) -> InstructionJudge:
        """Fit on the token ids of `sound` and `other` instructions, with `embeddings` the LLM's
        (vocabulary, d) input embedding table."""
        if not sound or not other or not all(len(ids) for ids in [*sound, *other]):
            raise ValueError("the instruction judge needs sound and other instructions, none empty")
        features = np.stack([embeddings[list(ids)].mean(0) for ids in [*sound, *other]])
        classifier = AttributeClassifier.fit(features, ["sound"] * len(sound) + ["other"] * len(other), l2)
        return cls.fold(classifier, embeddings)

    @classmethod
    def fold(cls, classifier: AttributeClassifier, embeddings: np.ndarray) -> InstructionJudge:
        """The per-token form of a two-value ("other", "sound") classifier over mean embeddings."""
        if classifier.values != ("other", "sound"):
            raise ValueError(f"the judge folds an other/sound classifier, not {classifier.values}")
        direction = (classifier.weight[1] - classifier.weight[0]) / classifier.scale
        bias = float(classifier.bias[1] - classifier.bias[0] - direction @ classifier.mean)
        return cls((np.asarray(embeddings, np.float32) @ direction).astype(np.float32), bias)

    def to_dict(self) -> dict:
        # 9 significant digits: a float32 reads back exactly
        return {"bias": self.bias, "token_scores": [float(f"{x:.9g}") for x in self.token_scores]}

    @classmethod
    def from_dict(cls, data: dict) -> InstructionJudge:
        scores = np.asarray(data["token_scores"], dtype=np.float32)
        if scores.ndim != 1 or not len(scores):
            raise ValueError(f"judge token_scores must be one score per token, got shape {scores.shape}")
        return cls(scores, float(data["bias"]))


class SoundTagger:
    """One `AttributeClassifier` per attribute; `line(states)` is the text the LLM reads, and with a
    `judge`, `wanted(ids)` says whether an instruction gets it."""

    def __init__(
        self, classifiers: dict[str, AttributeClassifier], hidden_size: int, judge: InstructionJudge | None = None
    ) -> None:
        self.classifiers, self.hidden_size, self.judge = classifiers, hidden_size, judge

    def wanted(self, ids: Sequence[int]) -> bool:
        """Whether the instruction with token `ids` is shown the line (always, without a judge)."""
        return self.judge is None or self.judge.about_sound(ids)

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

    def longest_line_tokens(self, tokenizer) -> int:
        """The most tokens `line` can add (with its newline) for any clip: every combination of the
        values it can predict, tokenised (at most 3^5 lines) - what a token budget must allow for."""
        names = list(self.classifiers)
        combinations = itertools.product(*(self.classifiers[name].values for name in names))
        return max(
            len(
                tokenizer(f"\n{SOUND_PREFIX}{describe(dict(zip(names, values)))}", add_special_tokens=False)[
                    "input_ids"
                ]
            )
            for values in combinations
        )

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
        if self.judge is not None:
            data["judge"] = self.judge.to_dict()
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
            judge = InstructionJudge.from_dict(data["judge"]) if "judge" in data else None
            return cls(classifiers, hidden_size, judge)
        except (ValueError, KeyError, TypeError) as error:
            raise SelfPoweredError(f"{path}: not a sound tagger ({error})") from error
