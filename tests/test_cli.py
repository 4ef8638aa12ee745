from __future__ import annotations

import pytest
import soundfile as sf
from typer.testing import CliRunner

from selfpowered.cli import app
from tests.helpers import tone
from tests.tiny import tiny_lsm

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "ckpt"
    tiny_lsm().save_pretrained(path)
    return path


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, tone(1.5), 16_000)
    return path


def test_chat_on_a_checkpoint(checkpoint, clip):
    result = runner.invoke(
        app,
        ["chat", "--model", str(checkpoint), "--audio", str(clip), "--max-new-tokens", "4", "Transcribe the speech"],
    )
    assert result.exit_code == 0, result.output


def test_chat_batch_prints_one_line_per_file(checkpoint, clip, tmp_path):
    other = tmp_path / "other.wav"
    sf.write(other, tone(2.5, 300), 16_000)
    result = runner.invoke(
        app, ["chat", "-m", str(checkpoint), "-a", str(clip), "-a", str(other), "--max-new-tokens", "3", "Transcribe"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "\t" in line]
    assert [line.split("\t")[0] for line in lines] == [str(clip), str(other)]


def test_chat_text_mode(checkpoint):
    result = runner.invoke(app, ["chat", "-m", str(checkpoint), "--text", "--max-new-tokens", "3", "hello"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--audio", "missing.wav", "Transcribe"], "missing.wav: audio file not found"),
        (["Transcribe"], "speech mode needs --audio"),
        ([], "give an instruction"),
    ],
)
def test_chat_errors_are_one_clear_line(checkpoint, args, message):
    result = runner.invoke(app, ["chat", "-m", str(checkpoint), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_wrong_model_path(clip, tmp_path):
    result = runner.invoke(app, ["chat", "-m", str(tmp_path / "nope"), "-a", str(clip), "Transcribe"])
    assert result.exit_code == 2 and "not a SpeechLM checkpoint" in result.output


def test_config_file_with_unknown_key_names_file_and_field(tmp_path, checkpoint, clip):
    config = tmp_path / "chat.yaml"
    config.write_text(f"model: {checkpoint}\naudio: [{clip}]\ngeneration:\n  max_new_token: 5\n")
    result = runner.invoke(app, ["chat", "--config", str(config), "Transcribe"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert str(config) in text and "generation.max_new_token" in text


def test_config_file_values_are_used(tmp_path, checkpoint, clip):
    config = tmp_path / "chat.yaml"
    config.write_text(
        f"model: {checkpoint}\naudio: [{clip}]\ninstruction: Transcribe\ngeneration:\n  max_new_tokens: 2\n"
    )
    result = runner.invoke(app, ["chat", "--config", str(config)])
    assert result.exit_code == 0, result.output


def test_assets_list():
    result = runner.invoke(app, ["assets", "list"])
    assert result.exit_code == 0
    assert "whisper-tiny.en" in result.output and "smollm2-135m-instruct" in result.output


@pytest.mark.assets
def test_init_builds_an_untrained_checkpoint_on_the_embedded_models(tmp_path, clip):
    config = tmp_path / "model.yaml"
    config.write_text("model:\n  connector: {name: stack_mlp, hidden_size: 64}\n")
    out = tmp_path / "fresh"
    result = runner.invoke(app, ["init", str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "connector:\n    name: stack_mlp\n    hidden_size: 64" in result.output  # the validated config is echoed
    chat = runner.invoke(app, ["chat", "-m", str(out), "-a", str(clip), "--max-new-tokens", "4", "Transcribe"])
    assert chat.exit_code == 0, chat.output


def test_set_overrides_reach_the_stage_config(checkpoint, clip):
    result = runner.invoke(
        app, ["chat", "-m", str(checkpoint), "-a", str(clip), "--set", "generation.max_new_tokens=0", "Transcribe"]
    )
    assert result.exit_code == 2 and "generation.max_new_tokens: Input should be greater" in " ".join(
        result.output.split()
    )
    bad = runner.invoke(app, ["chat", "-m", str(checkpoint), "--set", "nonsense", "Transcribe"])
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output


def test_config_show_prints_the_defaults():
    result = runner.invoke(app, ["config", "show", "augment"])
    assert result.exit_code == 0 and "max_new_tokens: 225" in result.output and "# required" in result.output
    unknown = runner.invoke(app, ["config", "show", "nope"])
    assert unknown.exit_code == 2 and "unknown stage" in unknown.output
