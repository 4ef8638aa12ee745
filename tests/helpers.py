"""Small test inputs shared by several test modules: a voiced-looking signal and a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TRANSCRIPTS = [
    "my sister baked a loaf of bread at the market yesterday",
    "please close the kitchen window before the storm arrives",
    "the old bridge was closed to cars",
    "do you think the baker will open a small cafe next week",
]


def tone(seconds: float, freq: float = 220.0, rate: int = 16_000) -> np.ndarray:
    """A voiced-looking test signal: a tone with harmonics and a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    return (0.2 * signal + 0.01 * np.random.default_rng(int(freq)).standard_normal(t.size)).astype(np.float32)


def write_manifest(path: Path, count: int) -> Path:
    """A manifest of `count` rows cycling through TRANSCRIPTS (audio files need not exist)."""
    rows = [
        {"id": f"utt{i:04d}", "audio": f"audio/utt{i:04d}.flac", "text": TRANSCRIPTS[i % 4], "duration": 2.0}
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def batched_and_alone(model, clips, instructions, max_new_tokens: int = 6) -> tuple[list[str], list[str]]:
    """A model's greedy answers to all clips in one batch, and to each clip alone: equal when
    padding and masking are right."""
    batched = model.generate(
        audio=clips, instruction=instructions, max_new_tokens=max_new_tokens, batch_size=len(clips)
    )
    alone = [model.generate(audio=c, instruction=i, max_new_tokens=max_new_tokens) for c, i in zip(clips, instructions)]
    return batched, alone
