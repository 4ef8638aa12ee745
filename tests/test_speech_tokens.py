"""The speech-token kinds registry: every kind registers itself beside its code, says what it needs
from the rest of the model config, and is listed from the registry (`config show init`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfpowered.config import ModelConfig
from selfpowered.model.configuration import LSMConfig
from selfpowered.model.connectors import connector_tokens_per_second
from selfpowered.model.speech_tokens import (
    SpeechTokenKind,
    describe_speech_tokens,
    load_speech_tokens,
    reads_transcript,
    register_speech_tokens,
    resolve_speech_tokens,
    speech_tokens_per_second,
)

PACKAGE = Path(__file__).resolve().parents[1] / "src/selfpowered/model/speech_tokens"


def _config(speech_tokens: str, connector: dict, **fields) -> LSMConfig:
    return LSMConfig(
        encoder_config={"d_model": 32}, llm_config={"hidden_size": 48}, connector=connector,
        speech_tokens=speech_tokens, **fields,
    )  # fmt: skip


def test_every_module_of_the_package_registers_one_kind_under_its_file_name():
    kinds = load_speech_tokens()
    assert sorted(kinds) == sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert sorted(kinds) == ["connector", "ctc_posterior", "transcript", "whisper_text"]
    listing = describe_speech_tokens()
    docs = (PACKAGE.parents[3] / "docs/training.md").read_text()
    for name, kind in kinds.items():
        assert kind.name == name and f"#   {name}: {kind.summary}" in listing
        assert f"| `{name}` |" in docs, f"docs/training.md's speech_tokens table lacks {name}"


def test_an_unknown_kind_and_a_config_a_kind_cannot_use_are_refused_naming_why():
    with pytest.raises(ValueError, match=r"speech_tokens: unknown kind 'phonemes'; choose one of connector, ctc_post"):
        _config("phonemes", {"name": "stack_mlp"})
    with pytest.raises(ValueError, match=r"transcript reads Whisper's words.*got window_qformer"):
        _config("transcript", {"name": "window_qformer"})
    with pytest.raises(ValueError, match=r"transcript hears each clip once.*train_encoder: false"):
        _config("transcript", {"name": "none"}, train_encoder=True)
    with pytest.raises(ValueError, match=r"whisper_text reads Whisper's decoded text: it needs speech_states: decoder"):
        resolve_speech_tokens(ModelConfig(speech_tokens="whisper_text", connector="stack_mlp"))
    assert resolve_speech_tokens(ModelConfig(speech_tokens="transcript", connector="none")).name == "transcript"


def test_only_a_transcript_reading_kind_changes_the_prompt_and_the_token_rate():
    transcript = _config("transcript", {"name": "utterance_qformer", "queries": 4})
    plain = _config("connector", {"name": "stack_mlp", "stack_factor": 4})
    assert reads_transcript(transcript) and not reads_transcript(plain)
    assert speech_tokens_per_second(transcript) == pytest.approx(4.0 * 1.3)  # the heard words, not the 4 slots
    assert speech_tokens_per_second(plain) == connector_tokens_per_second(plain) == pytest.approx(50 / 4)


def test_registering_two_kinds_under_one_name_is_refused():
    load_speech_tokens()

    class Another(SpeechTokenKind):
        name = "transcript"
        summary = "a second transcript"

    with pytest.raises(ValueError, match="two speech-token kinds are called 'transcript'"):
        register_speech_tokens(Another)
