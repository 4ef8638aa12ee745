"""Shared fixtures: tiny models, synthetic and real audio, the real assets when installed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import tiny


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


@pytest.fixture(scope="session")
def librivox() -> list[tuple[Path, str]]:
    """The 5 public-domain LibriVox clips of Debian's pocketsphinx-testdata, with transcripts."""
    from selfpowered.assets import librivox_clips
    from selfpowered.errors import AssetError

    try:
        return librivox_clips()
    except AssetError as exc:  # required in CI (make setup installs it); optional elsewhere
        pytest.fail(str(exc)) if os.environ.get("CI") else pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """A real (random, tiny) causal LM folder with a chat-template tokenizer."""
    from transformers import LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llm")
    tokenizer = tiny.tiny_tokenizer()
    LlamaForCausalLM(tiny.tiny_llama_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
