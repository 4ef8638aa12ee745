"""ASR corpora in the shapes users have them -> a validated manifest (+ rejects).

Each importer only *finds* candidate records (with where each came from); `import_candidates`
then validates them with the manifest's own `check_row`, measures durations from the audio, writes the
manifest with audio paths relative to it, and lists every skipped record with its reason.

Kinds: `librispeech` (`*.trans.txt` + flac), `commonvoice` (`*.tsv` + `clips/`), `table` (CSV, TSV
or JSONL with configurable column names), `hf` (a Hugging Face dataset saved with `save_to_disk`
that has an audio column; its audio is written out as 16 kHz FLAC) and `pocketsphinx` (the
transcribed recordings of Debian's `pocketsphinx-testdata`: real human speech, a test set).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from selfpowered.atomic import atomic_file
from selfpowered.audio import SAMPLE_RATE
from selfpowered.config import ImportConfig, LimitsConfig
from selfpowered.corpus.manifest import (
    ManifestReport,
    Reject,
    SeenIds,
    check_row,
    write_manifest,
    write_rejects,
)
from selfpowered.errors import SelfPoweredError

KINDS = ("librispeech", "commonvoice", "table", "hf", "pocketsphinx")
POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")


@dataclass
class Candidate:
    """A record found in the source, before validation. `problem` rejects it outright."""

    raw: dict[str, Any]
    source: str  # file the record came from
    line: int  # line (or row index) in that file
    problem: str | None = None


def import_corpus(config: ImportConfig) -> ManifestReport:
    """`selfpowered corpus import`: find the chosen kind's records and write a validated manifest."""
    candidates = candidates_for(config.kind, config.source, config.output, config.importer_options())
    return import_candidates(candidates, config.output, config.limits)


def import_candidates(
    candidates: Iterable[Candidate], out: str | Path, limits: LimitsConfig | None = None
) -> ManifestReport:
    """Validate candidates (audio paths absolute or relative to their source file) and write
    `out` plus `<out>.rejects.jsonl`."""
    out = Path(out)
    limits = limits or LimitsConfig()
    rows, rejects, seen, count = [], [], SeenIds(), 0
    for candidate in tqdm(candidates, desc=f"importing -> {out.name}", unit=" utt"):
        count += 1
        reason = candidate.problem
        row = None
        if reason is None:
            row, reason = check_row(candidate.raw, Path(candidate.source).parent, limits, seen, count)
        if row is None:
            rejects.append(Reject(candidate.line, candidate.raw.get("id"), reason, candidate.source))
            continue
        row.audio = str(row.audio_path(Path(candidate.source).parent).resolve())
        rows.append(row)
    write_manifest(out, rows, base=out.parent)
    write_rejects(out, rejects)
    return ManifestReport(rows, rejects, count)


# -- LibriSpeech --------------------------------------------------------------------------------------
def librispeech(src: str | Path, lowercase: bool = True) -> Iterator[Candidate]:
    """`<speaker>/<chapter>/<speaker>-<chapter>.trans.txt` lines "ID TEXT" next to `ID.flac`."""
    src = Path(src)
    transcripts = sorted(src.rglob("*.trans.txt"))
    if not transcripts:
        raise SelfPoweredError(f"{src}: no *.trans.txt files; is this a LibriSpeech folder?")
    for transcript in transcripts:
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            raw = {
                "id": utt_id,
                "audio": f"{utt_id}.flac",
                "text": text.lower() if lowercase else text,
                "speaker": utt_id.split("-")[0],
                "lang": "en",
            }
            yield Candidate(raw, str(transcript), number)


# -- pocketsphinx-testdata --------------------------------------------------------------------------
def pocketsphinx(src: str | Path, audio_dir: str | Path) -> Iterator[Candidate]:
    """The 11 transcribed recordings of Debian's pocketsphinx-testdata (BSD-2): 5 LibriVox clips of
    *Sense and Sensibility* (`librivox/transcription`), 5 spoken card names (`cards/`), and
    `goforward.raw` ("go forward ten meters", raw 16-bit 16 kHz mono, written out as FLAC).
    Sphinx transcripts look like `<s> seven of clubs </s> (003)`."""
    import numpy as np
    import soundfile as sf

    src = Path(src)
    if not (src / "librivox" / "transcription").is_file():
        raise SelfPoweredError(f"{src}: no librivox/transcription; install Debian's pocketsphinx-testdata")
    for folder, listing, speaker in (
        ("librivox", "transcription", "librivox"),
        ("cards", "cards.transcription", "cards"),
    ):
        path = src / folder / listing
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = re.fullmatch(r"\s*<s>(.*)</s>\s*\((\S+)\)\s*", line)
            if not match:
                yield Candidate({}, str(path), number, problem=f"not a sphinx transcript line: {line!r}")
                continue
            text, name = " ".join(match.group(1).split()), match.group(2)
            raw = {"id": f"{speaker}-{name}", "audio": f"{name}.wav", "text": text, "speaker": speaker, "lang": "en"}
            yield Candidate(raw, str(path), number)
    raw_file = src / "goforward.raw"
    target = Path(audio_dir) / "goforward.flac"
    with atomic_file(target, suffix=".flac") as temporary:
        samples = np.fromfile(raw_file, dtype="<i2").astype(np.float32) / 32768.0
        sf.write(str(temporary), samples, SAMPLE_RATE, format="FLAC")
    raw = {"id": "goforward", "audio": str(target.resolve()), "text": "go forward ten meters", "speaker": "goforward"}
    yield Candidate({**raw, "lang": "en"}, str(raw_file), 1)


# -- Common Voice -------------------------------------------------------------------------------------
def commonvoice(src: str | Path, tsv: str = "validated.tsv", lang: str = "en") -> Iterator[Candidate]:
    """Common Voice release folder: a `*.tsv` (client_id, path, sentence, ...) and `clips/`."""
    src = Path(src)
    table = src / tsv
    if not table.is_file():
        raise SelfPoweredError(
            f"{table}: not found; pass --tsv with one of {sorted(p.name for p in src.glob('*.tsv'))}"
        )
    with open(table, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "sentence"} - set(reader.fieldnames or [])
        if missing:
            raise SelfPoweredError(f"{table}: missing column(s) {sorted(missing)}")
        for number, record in enumerate(reader, start=2):  # line 1 is the header
            path = record.get("path") or ""
            raw = {
                "id": Path(path).stem,
                "audio": f"clips/{path}",
                "text": record.get("sentence") or "",
                "speaker": record.get("client_id") or None,
                "lang": record.get("locale") or lang,
            }
            yield Candidate(raw, str(table), number)


# -- generic tables ------------------------------------------------------------------------------------
def table(
    src: str | Path,
    id_column: str = "id",
    audio_column: str = "audio",
    text_column: str = "text",
    speaker_column: str | None = "speaker",
    duration_column: str | None = "duration",
) -> Iterator[Candidate]:
    """CSV / TSV (header row) or JSONL; audio paths relative to the table's folder or absolute."""
    src = Path(src)
    if not src.is_file():
        raise SelfPoweredError(f"{src}: table not found")
    if src.suffix == ".jsonl":
        records: Iterator[tuple[int, Any, str | None]] = _jsonl_records(src)
    elif src.suffix in (".csv", ".tsv"):
        records = _csv_records(src, "\t" if src.suffix == ".tsv" else ",")
    else:
        raise SelfPoweredError(f"{src}: unknown table format {src.suffix!r} (use .csv, .tsv or .jsonl)")
    for number, record, error in records:
        if error:
            yield Candidate({}, str(src), number, problem=error)
            continue
        missing = [c for c in (id_column, audio_column, text_column) if c not in record]
        if missing:
            yield Candidate({}, str(src), number, problem=f"missing column(s) {missing}")
            continue
        raw = {"id": record[id_column], "audio": record[audio_column], "text": record[text_column]}
        if speaker_column and record.get(speaker_column) not in (None, ""):
            raw["speaker"] = record[speaker_column]
        if duration_column and record.get(duration_column) not in (None, ""):
            try:
                raw["duration"] = float(record[duration_column])
            except (TypeError, ValueError):
                yield Candidate(raw, str(src), number, problem=f"column {duration_column!r} is not a number")
                continue
        yield Candidate(raw, str(src), number)


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    from selfpowered.jsonl import iter_jsonl

    for number, record, error in iter_jsonl(path):
        if error is None and not isinstance(record, dict):
            error = "record is not a JSON object"
        yield number, record, error


def _csv_records(path: Path, delimiter: str) -> Iterator[tuple[int, Any, str | None]]:
    with open(path, encoding="utf-8", newline="") as handle:
        for number, record in enumerate(csv.DictReader(handle, delimiter=delimiter), start=2):
            yield number, record, None


# -- Hugging Face datasets -----------------------------------------------------------------------------
def hf_dataset(
    src: str | Path,
    out_audio_dir: str | Path,
    split: str | None = None,
    audio_column: str = "audio",
    text_column: str = "text",
    id_column: str | None = "id",
    speaker_column: str | None = "speaker_id",
) -> Iterator[Candidate]:
    """A dataset saved with `save_to_disk`. Audio is read as raw bytes (no torchcodec needed),
    decoded with soundfile, and written as 16 kHz mono FLAC under `out_audio_dir`."""
    import datasets
    import soundfile as sf

    from selfpowered.audio import resample, to_mono

    src = Path(src)
    try:
        loaded = datasets.load_from_disk(str(src))
    except (FileNotFoundError, ValueError) as exc:
        raise SelfPoweredError(f"{src}: not a dataset saved with save_to_disk ({exc})") from exc
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            raise SelfPoweredError(f"{src}: holds splits {list(loaded)}; choose one with --split")
        if split not in loaded:
            raise SelfPoweredError(f"{src}: no split {split!r}; it has {list(loaded)}")
        loaded = loaded[split]
    for column in (audio_column, text_column):
        if column not in loaded.column_names:
            raise SelfPoweredError(f"{src}: no column {column!r}; columns are {loaded.column_names}")
    if isinstance(loaded.features[audio_column], datasets.Audio):
        loaded = loaded.cast_column(audio_column, datasets.Audio(decode=False))
    out_audio_dir = Path(out_audio_dir)
    source = str(src / "dataset")
    for index, record in enumerate(loaded):
        utt_id = (
            str(record[id_column]) if id_column and record.get(id_column) is not None else f"{src.name}-{index:07d}"
        )
        raw = {"id": utt_id, "audio": "", "text": record[text_column] or ""}
        if speaker_column and record.get(speaker_column) is not None:
            raw["speaker"] = str(record[speaker_column])
        audio = record[audio_column] or {}
        try:
            if audio.get("bytes"):
                samples, rate = sf.read(io.BytesIO(audio["bytes"]), dtype="float32")
            elif audio.get("path") and Path(audio["path"]).is_file():
                samples, rate = sf.read(audio["path"], dtype="float32")
            else:
                yield Candidate(raw, source, index, problem="audio column holds neither bytes nor a readable path")
                continue
        except (sf.LibsndfileError, RuntimeError) as exc:
            yield Candidate(raw, source, index, problem=f"audio does not decode ({exc})")
            continue
        safe_id = utt_id.replace("/", "_")
        target = out_audio_dir / f"{safe_id}.flac"
        with atomic_file(target, suffix=".flac") as temporary:
            sf.write(str(temporary), resample(to_mono(samples), rate), SAMPLE_RATE, format="FLAC")
        raw["audio"] = str(target.resolve())
        yield Candidate(raw, source, index)


def candidates_for(kind: str, src: str | Path, out: str | Path, options: dict[str, Any]) -> Iterator[Candidate]:
    """Dispatch an importer by kind name (the CLI's `corpus import KIND`)."""
    if kind == "librispeech":
        return librispeech(src, **options)
    if kind == "commonvoice":
        return commonvoice(src, **options)
    if kind == "table":
        return table(src, **options)
    if kind == "hf":
        return hf_dataset(src, Path(out).parent / (Path(out).stem + "_audio"), **options)
    if kind == "pocketsphinx":
        return pocketsphinx(src, Path(out).parent / (Path(out).stem + "_audio"))
    raise SelfPoweredError(f"unknown corpus kind {kind!r}; choose one of {', '.join(KINDS)}")
