from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from selfpowered.cli import app
from selfpowered.config import LimitsConfig
from selfpowered.corpus.manifest import read_manifest, write_rejects
from selfpowered.jsonl import rejects_path
from tests.helpers import tone


@pytest.fixture
def corpus(tmp_path):
    """A folder with good and bad audio files, and a helper to write manifest lines."""
    (tmp_path / "wav").mkdir()
    sf.write(tmp_path / "wav" / "good1.wav", tone(1.0), 16_000)
    sf.write(tmp_path / "wav" / "good2.flac", tone(2.0), 16_000)
    sf.write(tmp_path / "wav" / "long.wav", tone(3.0), 16_000)
    sf.write(tmp_path / "wav" / "low_rate.wav", tone(1.0, rate=4_000), 4_000)
    sf.write(tmp_path / "wav" / "empty.wav", np.zeros(0, dtype=np.float32), 16_000)
    sf.write(tmp_path / "wav" / "nan.wav", np.full(16_000, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")
    (tmp_path / "wav" / "garbage.wav").write_bytes(b"RIFF but not really" * 20)
    return tmp_path


def _write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


GOOD = {"id": "a", "audio": "wav/good1.wav", "text": "hello there"}

BAD_LINES = [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "record is not a JSON object"),
    ({"audio": "wav/good1.wav", "text": "x"}, "missing field 'id'"),
    ({"id": "b", "text": "x"}, "missing field 'audio'"),
    ({"id": "", "audio": "wav/good1.wav", "text": "x"}, "field 'id' must be a non-empty string"),
    ({"id": "c", "audio": "wav/good1.wav", "text": "   "}, "empty transcript"),
    ({"id": "d", "audio": "wav/good1.wav", "text": "x", "duration": "long"}, "field 'duration' must be a number"),
    ({"id": "a", "audio": "wav/good2.flac", "text": "x"}, "duplicate id 'a' (first seen on line 1)"),
    ({"id": "e", "audio": "wav/missing.wav", "text": "x"}, "audio file not found"),
    ({"id": "f", "audio": "wav/garbage.wav", "text": "x"}, "audio file does not decode"),
    ({"id": "g", "audio": "wav/low_rate.wav", "text": "x"}, "sample rate 4000 Hz is below 8000 Hz"),
    ({"id": "h", "audio": "wav/empty.wav", "text": "x"}, "audio file is empty"),
    ({"id": "i", "audio": "wav/good1.wav", "text": "x", "duration": 5.0}, "says 5.00 s but the audio lasts 1.00 s"),
    ({"id": "j", "audio": "wav/long.wav", "text": "x"}, "duration 3.00 s is outside [0.1, 2.5] s"),
]


def test_every_rejection_reason_is_specific_and_good_rows_survive(corpus):
    lines = [GOOD] + [line for line, _ in BAD_LINES] + [{"id": "z", "audio": "wav/good2.flac", "text": "bye"}]
    manifest = _write(corpus / "m.jsonl", lines)
    report = read_manifest(manifest, LimitsConfig(max_duration=2.5))
    assert [row.id for row in report.rows] == ["a", "z"]
    assert report.rows[1].duration == pytest.approx(2.0)
    assert len(report.rejects) == len(BAD_LINES)
    for reject, (_, reason) in zip(report.rejects, BAD_LINES):
        assert reason in reject.reason
    assert [reject.line for reject in report.rejects] == list(range(2, 2 + len(BAD_LINES)))
    written = write_rejects(manifest, report.rejects)
    assert written == rejects_path(manifest) == corpus / "m.rejects.jsonl"
    records = [json.loads(line) for line in written.read_text().splitlines()]
    assert records[7] == {"line": 9, "id": "a", "reason": "duplicate id 'a' (first seen on line 1)"}


def test_nan_audio_is_found_only_when_decoding(corpus):
    manifest = _write(corpus / "m.jsonl", [{"id": "n", "audio": "wav/nan.wav", "text": "x"}])
    assert len(read_manifest(manifest).rows) == 1  # header looks fine
    report = read_manifest(manifest, LimitsConfig(decode=True))
    assert "NaN" in report.rejects[0].reason


def test_absolute_audio_paths_and_extra_fields_are_kept(corpus):
    row = {"id": "a", "audio": str(corpus / "wav" / "good1.wav"), "text": "hi", "emotion": "calm"}
    report = read_manifest(_write(corpus / "m.jsonl", [row]))
    assert report.rows[0].to_json()["emotion"] == "calm"


def test_validate_cli_summary_rejects_and_clean_output(corpus):
    manifest = _write(corpus / "m.jsonl", [GOOD, BAD_LINES[8][0], "{broken"])
    clean = corpus / "clean" / "ok.jsonl"
    result = CliRunner().invoke(app, ["corpus", "validate", str(manifest), "--output", str(clean)])
    assert result.exit_code == 0, result.output
    assert re.search(r"valid\s+1\n", result.output) and re.search(r"rejected\s+2\n", result.output)
    assert len((corpus / "m.rejects.jsonl").read_text().splitlines()) == 2
    (row,) = [json.loads(line) for line in clean.read_text().splitlines()]
    assert row["audio"] == "../wav/good1.wav"  # rewritten relative to the new manifest
    assert read_manifest(clean).rows[0].id == "a"


def test_missing_manifest_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["corpus", "validate", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2 and "manifest not found" in result.output
