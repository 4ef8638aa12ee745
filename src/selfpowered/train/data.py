"""Training data: instruction samples -> batches for the SpeechLM.

A training file is an `augment` output (`id, audio, instruction, response, duration, ...`) or a
plain ASR manifest (then the instruction is the first `asr` template and the answer the `text`).
Bad lines are skipped, counted and listed in `<file>.train-rejects.jsonl`; an empty result is an
error. Batches are length-grouped by a token budget: utterances of similar length go together and
a batch holds at most `token_budget` tokens (speech + text, estimated), so short utterances get
large batches and long ones small, with little padding.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from selfpowered.errors import SelfPoweredError
from selfpowered.jsonl import companion_path, iter_jsonl, write_jsonl
from selfpowered.text.tasks import DEFAULT_ASR_INSTRUCTION


@dataclass(frozen=True)
class TrainSample:
    id: str
    audio: Path
    instruction: str
    response: str
    duration: float
    transcript: str = ""  # what the audio says (the teacher's text-mode input, CTC's target)


def read_samples(path: str | Path, max_duration: float = 30.0) -> list[TrainSample]:
    """Read a samples file (or ASR manifest); skipped lines go to a rejects file beside it."""
    path = Path(path)
    if not path.is_file():
        raise SelfPoweredError(f"{path}: training file not found")
    samples, rejects = [], []
    for number, record, error in iter_jsonl(path):
        reason = error
        if reason is None and not isinstance(record, dict):
            reason = "record is not a JSON object"
        if reason is None:
            response = record.get("response", record.get("text"))
            instruction = record.get("instruction", DEFAULT_ASR_INSTRUCTION if "text" in record else None)
            missing = [
                k
                for k, v in (
                    ("id", record.get("id")),
                    ("audio", record.get("audio")),
                    ("instruction", instruction),
                    ("response", response),
                )
                if not v
            ]
            duration = record.get("duration")
            if missing:
                reason = f"missing or empty field(s) {missing}"
            elif not isinstance(duration, (int, float)) or duration <= 0:
                reason = "field 'duration' must be a positive number"
            elif duration > max_duration:
                reason = f"duration {duration:.1f} s is over max_duration {max_duration} s"
        if reason is not None:
            rejects.append(
                {"line": number, "id": record.get("id") if isinstance(record, dict) else None, "reason": reason}
            )
            continue
        audio = Path(record["audio"])
        samples.append(
            TrainSample(
                str(record["id"]),
                audio if audio.is_absolute() else path.parent / audio,
                str(instruction),
                str(response),
                float(duration),
                str(record.get("transcript") or record.get("text") or ""),
            )
        )
    write_jsonl(companion_path(path, "train-rejects.jsonl"), rejects)
    if not samples:
        raise SelfPoweredError(f"{path}: no usable training samples ({len(rejects)} lines rejected)")
    return samples


class SpeechInstructionDataset(Dataset):
    """Items carry what Whisper heard (`heard`: a `HearingCache` and each sample's key in it, for an
    LSM that reads the transcript), or the cached encoder states when a feature cache is given,
    else the audio path."""

    def __init__(self, samples: list[TrainSample], cache=None, heard: tuple | None = None) -> None:
        self.samples, self.cache = samples, cache
        self.heard_cache, self.heard_keys = heard if heard is not None else (None, None)
        if self.heard_keys is not None and len(self.heard_keys) != len(samples):
            raise ValueError(f"{len(samples)} samples but {len(self.heard_keys)} hearing keys")
        if cache is not None:
            from selfpowered.model.feature_cache import audio_key

            missing = [s.audio for s in samples if audio_key(s.audio) not in cache]
            if missing:
                raise SelfPoweredError(
                    f"{len(missing)} training audio files are not in the feature cache {cache.folder} "
                    f"(e.g. {missing[0]}); run `selfpowered features` with the same files and encoder"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        item: dict[str, Any] = {
            "instruction": sample.instruction,
            "response": sample.response,
            "transcript": sample.transcript,
        }
        if self.heard_cache is not None:
            item["heard"] = self.heard_cache.get(self.heard_keys[index])
        elif self.cache is not None:
            from selfpowered.model.feature_cache import audio_key

            item["states"] = self.cache.get(audio_key(sample.audio))
        else:
            item["audio"] = str(sample.audio)
        return item

    def token_lengths(self, tokens_per_second: float, extra: Callable[[str], int] | None = None) -> list[int]:
        """Estimated tokens per sample (speech tokens + ~4 characters per text token), plus
        `extra(instruction)` (e.g. the processor's `tag_line_tokens`: the sound tagger's line)."""
        return [
            math.ceil(s.duration * tokens_per_second)
            + (len(s.instruction) + len(s.response)) // 4
            + 16
            + (extra(s.instruction) if extra is not None else 0)
            for s in self.samples
        ]


class Collator:
    """Items -> one training batch of tensors through the model's processor (prompt layout, labels,
    and log-mel features or padded cached states). Picklable, so it runs in data-loader workers.

    For the extra losses it adds, on the host too: `teacher_*` (the text-mode prompt with the
    transcript and the same answer, for self-distillation) and `ctc_targets` / `ctc_target_lengths`
    (the transcript in the CTC head's vocabulary)."""

    def __init__(self, processor, teacher: bool = False, ctc_head=None) -> None:
        self.processor, self.teacher, self.ctc_head = processor, teacher, ctc_head

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from selfpowered.text.tasks import text_prompt

        if "heard" in items[0]:
            speech = {"heard": [item["heard"] for item in items]}
        elif "states" in items[0]:
            speech = {"encoder_states": [item["states"] for item in items]}
        else:
            speech = {"audio": [item["audio"] for item in items]}
        responses = [item["response"] for item in items]
        batch = self.processor([item["instruction"] for item in items], response=responses, **speech)
        if self.teacher:
            missing = [i for i, item in enumerate(items) if not item["transcript"]]
            if missing:
                raise SelfPoweredError("the kl loss needs each sample's transcript (augment output or manifest)")
            prompts = [text_prompt(item["instruction"], item["transcript"]) for item in items]
            teacher = self.processor(prompts, response=responses)
            batch.update({f"teacher_{key}": value for key, value in teacher.items()})
        if self.ctc_head is not None:
            targets, lengths = self.ctc_head.targets(self.processor.tokenizer, [item["transcript"] for item in items])
            batch.update(ctc_targets=targets, ctc_target_lengths=lengths)
        return batch


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Length-grouped batches under a token budget (longest item x rows <= budget), shuffled by
    (seed, epoch): sort by length within random pools of 50 batches' worth, cut, shuffle batches."""

    def __init__(self, lengths: list[int], token_budget: int, max_batch: int = 64, seed: int = 0) -> None:
        if token_budget < max(lengths):
            raise SelfPoweredError(f"token_budget {token_budget} is below the longest sample ({max(lengths)} tokens)")
        self.lengths, self.budget, self.max_batch, self.seed = lengths, token_budget, max_batch, seed
        self.epoch = 0
        self._batches = self._make_batches()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._batches = self._make_batches()

    def _make_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        pool = max(1, 50 * self.budget // max(1, int(sum(self.lengths) / len(self.lengths))))
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: self.lengths[i])
            current: list[int] = []
            longest = 0
            for index in chunk:
                longest_if = max(longest, self.lengths[index])
                if current and (len(current) + 1 > self.max_batch or longest_if * (len(current) + 1) > self.budget):
                    batches.append(current)
                    current, longest_if = [], self.lengths[index]
                current.append(index)
                longest = longest_if
            if current:
                batches.append(current)
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)
