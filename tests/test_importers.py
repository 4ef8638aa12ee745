from __future__ import annotations

import io
import json
import re

import pytest
import soundfile as sf
from typer.testing import CliRunner

from selfpowered.cli import app
from selfpowered.corpus.importers import import_candidates
from selfpowered.corpus.importers.commonvoice import commonvoice
from selfpowered.corpus.importers.hf import hf_dataset
from selfpowered.corpus.importers.librispeech import librispeech
from selfpowered.corpus.importers.table import table
from selfpowered.corpus.manifest import read_manifest
from selfpowered.errors import SelfPoweredError
from tests.helpers import tone


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_librispeech_layout(tmp_path):
    chapter = tmp_path / "LibriSpeech" / "test-clean" / "19" / "198"
    chapter.mkdir(parents=True)
    sf.write(chapter / "19-198-0000.flac", tone(1.5), 16_000)
    sf.write(chapter / "19-198-0001.flac", tone(0.8), 16_000)
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 HE HOPED THERE WOULD BE STEW\n19-198-0001 FOR DINNER\n19-198-0002 MISSING AUDIO\n"
    )
    out = tmp_path / "out" / "ls.jsonl"
    report = import_candidates(librispeech(tmp_path / "LibriSpeech"), out)
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["19-198-0000", "19-198-0001"]
    assert rows[0]["text"] == "he hoped there would be stew" and rows[0]["speaker"] == "19"
    assert rows[0]["duration"] == pytest.approx(1.5) and rows[1]["duration"] == pytest.approx(0.8)  # measured
    assert rows[0]["audio"] == "../LibriSpeech/test-clean/19/198/19-198-0000.flac"
    (reject,) = _rows(tmp_path / "out" / "ls.rejects.jsonl")
    assert reject["id"] == "19-198-0002" and reject["line"] == 3 and "audio file not found" in reject["reason"]
    assert reject["source"].endswith("19-198.trans.txt")
    assert len(read_manifest(out).rows) == 2 and report.summary()["rejected"] == 1


def test_librispeech_wrong_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SelfPoweredError, match="no \\*.trans.txt"):
        list(librispeech(tmp_path))


def test_common_voice_tsv_and_mp3_clips(tmp_path):
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "common_voice_en_1.mp3", tone(2.0), 16_000, format="MP3")
    sf.write(tmp_path / "clips" / "common_voice_en_2.mp3", tone(1.0), 16_000, format="MP3")
    (tmp_path / "validated.tsv").write_text(
        "client_id\tpath\tsentence\tup_votes\tlocale\n"
        "spk1\tcommon_voice_en_1.mp3\tThe cat sat on the mat.\t2\ten\n"
        "spk2\tcommon_voice_en_2.mp3\t\t2\ten\n"
    )
    out = tmp_path / "cv.jsonl"
    import_candidates(commonvoice(tmp_path), out)
    (row,) = _rows(out)
    assert row["id"] == "common_voice_en_1" and row["speaker"] == "spk1" and row["text"] == "The cat sat on the mat."
    assert 1.9 < row["duration"] < 2.2  # mp3 decoder padding
    (reject,) = _rows(tmp_path / "cv.rejects.jsonl")
    assert reject["line"] == 3 and "empty transcript" in reject["reason"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_generic_table_with_own_column_names(tmp_path, suffix):
    sf.write(tmp_path / "a.wav", tone(1.0), 16_000)
    sf.write(tmp_path / "b.wav", tone(1.2), 16_000)
    records = [
        {"utt": "u1", "file": "a.wav", "words": "first one", "who": "s1"},
        {"utt": "u2", "file": "b.wav", "words": "second one", "who": "s2"},
        {"utt": "u3", "file": "c.wav", "words": "no file", "who": "s3"},
    ]
    src = tmp_path / f"table{suffix}"
    if suffix == ".csv":
        src.write_text(
            "utt,file,words,who\n" + "".join(f"{r['utt']},{r['file']},{r['words']},{r['who']}\n" for r in records)
        )
    else:
        src.write_text("".join(json.dumps(r) + "\n" for r in records) + "{bad json\n")
    out = tmp_path / "t.jsonl"
    candidates = table(src, id_column="utt", audio_column="file", text_column="words", speaker_column="who")
    import_candidates(candidates, out)
    assert [(r["id"], r["speaker"], r["text"]) for r in _rows(out)] == [
        ("u1", "s1", "first one"),
        ("u2", "s2", "second one"),
    ]
    reasons = [r["reason"] for r in _rows(tmp_path / "t.rejects.jsonl")]
    assert "audio file not found" in reasons[0]
    if suffix == ".jsonl":
        assert reasons[1].startswith("invalid JSON")


def test_table_missing_column(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("id,path,text\nx,a.wav,hi\n")
    import_candidates(table(src), tmp_path / "o.jsonl")
    assert "missing column(s) ['audio']" in _rows(tmp_path / "o.rejects.jsonl")[0]["reason"]


def test_hugging_face_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    wav = io.BytesIO()
    sf.write(wav, tone(1.0, rate=22_050), 22_050, format="WAV")
    sf.write(tmp_path / "on_disk.wav", tone(0.5), 16_000)
    data = datasets.Dataset.from_dict(
        {
            "audio": [
                {"bytes": wav.getvalue(), "path": None},
                {"bytes": None, "path": str(tmp_path / "on_disk.wav")},
                {"bytes": b"not audio", "path": None},
            ],
            "text": ["from bytes", "from a path", "broken"],
            "id": ["h1", "h2", "h3"],
        }
    ).cast_column("audio", datasets.Audio(decode=False))
    datasets.DatasetDict({"train": data}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(SelfPoweredError, match="choose one with --split"):
        list(hf_dataset(tmp_path / "ds", tmp_path / "audio"))
    out = tmp_path / "hf.jsonl"
    import_candidates(hf_dataset(tmp_path / "ds", tmp_path / "audio", split="train"), out)
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["h1", "h2"]
    assert sf.info(str(tmp_path / "audio" / "h1.flac")).samplerate == 16_000  # resampled from 22.05 kHz
    assert rows[0]["duration"] == pytest.approx(1.0, abs=0.01)
    assert "does not decode" in _rows(tmp_path / "hf.rejects.jsonl")[0]["reason"]


def test_import_cli(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0), 16_000)
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "x", "audio": "a.wav", "text": "hi"}) + "\n")
    result = CliRunner().invoke(
        app, ["corpus", "import", "table", str(tmp_path / "t.jsonl"), str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"valid\s+1\n", result.output)
    bad = CliRunner().invoke(app, ["corpus", "import", "kaldi", str(tmp_path), str(tmp_path / "o.jsonl")])
    assert bad.exit_code == 2 and "kind" in bad.output
    assert "unknown corpus kind 'kaldi'; choose one of commonvoice, hf, librispeech, pocketsphinx, table" in bad.output


def test_a_kind_takes_its_settings_from_its_own_section(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0), 16_000)
    (tmp_path / "t.csv").write_text("key,wav,sentence\nx,a.wav,hello there\n")
    args = ["corpus", "import", "table", str(tmp_path / "t.csv"), str(tmp_path / "o.jsonl")]
    columns = ["--set", "table.id_column=key", "--set", "table.audio_column=wav", "--set", "table.text_column=sentence"]
    result = CliRunner().invoke(app, args + columns)
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["text"]) for r in _rows(tmp_path / "o.jsonl")] == [("x", "hello there")]
    # the settings of the old flat layout, a typo in a section, another kind's bad section: named errors
    flat = CliRunner().invoke(app, args + ["--set", "text_column=sentence"])
    assert flat.exit_code == 2 and "unknown key(s) 'text_column'" in flat.output
    typo = CliRunner().invoke(app, args + ["--set", "table.text_colum=sentence"])
    assert typo.exit_code == 2 and "table.text_colum: Extra inputs are not permitted" in typo.output
    other = CliRunner().invoke(app, args + ["--set", "librispeech.lowercase=maybe"])
    assert other.exit_code == 2 and "librispeech.lowercase: Input should be a valid boolean" in other.output


def test_every_registered_kind_is_listed_with_its_settings():
    from selfpowered.corpus.importers import describe_importers, load_importers

    assert sorted(load_importers()) == ["commonvoice", "hf", "librispeech", "pocketsphinx", "table"]
    shown = CliRunner().invoke(app, ["config", "show", "import"])
    assert shown.exit_code == 0 and describe_importers() in shown.output
    assert "#     text_column: text" in shown.output and "#   pocketsphinx: " in shown.output
