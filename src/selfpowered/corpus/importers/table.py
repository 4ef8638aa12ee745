"""`table`: a CSV, TSV or JSONL table with configurable column names."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.corpus.importers import Candidate, Importer, register_importer
from selfpowered.errors import SelfPoweredError


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


class TableOptions(StrictModel):
    id_column: str = "id"
    audio_column: str = Field("audio", description="audio paths, relative to the table's folder or absolute")
    text_column: str = "text"
    speaker_column: str | None = "speaker"
    duration_column: str | None = Field("duration", description="seconds; measured from the audio when absent")


@register_importer
class Table(Importer):
    name = "table"
    summary = "a CSV / TSV (header row) or JSONL table of audio paths and transcripts"
    Options = TableOptions

    def candidates(self, src: Path, out: Path, options: TableOptions) -> Iterator[Candidate]:
        return table(src, **options.model_dump())
