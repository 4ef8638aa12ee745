"""Shared fixtures: tiny models, synthetic and real audio, the real assets when installed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "assets: needs the packaged real weights (installed by make setup)")
    config.addinivalue_line("markers", "slow: end-to-end on real models (minutes)")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tone(seconds: float, freq: float = 220.0, rate: int = 16_000) -> np.ndarray:
    """A voiced-looking test signal: a tone with harmonics and a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    return (0.2 * signal + 0.01 * np.random.default_rng(int(freq)).standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="session")
def librivox() -> list[tuple[Path, str]]:
    """The 5 public-domain LibriVox clips of Debian's pocketsphinx-testdata, with transcripts."""
    from selfpowered.assets import librivox_clips
    from selfpowered.errors import AssetError

    try:
        return librivox_clips()
    except AssetError as exc:  # required in CI (make setup installs it); optional elsewhere
        pytest.fail(str(exc)) if os.environ.get("CI") else pytest.skip(str(exc))
