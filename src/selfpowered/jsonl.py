"""JSON Lines, the format of every file between stages: read with line numbers, write atomically,
append with resume, and the `<name>.<kind>` companion files (rejects, stats) beside an output.

Append-only logs are what makes a long job resumable: each finished record is one flushed line, so
a kill loses at most the line being written. `drop_torn_tail` cuts such a half-written last line
before anything is appended after it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from selfpowered.atomic import atomic_write_text


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed object or None, parse error or None) for each non-blank line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield number, None, f"invalid JSON ({exc.msg} at column {exc.colno})"


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Write all records at once, atomically (a reader never sees half a file)."""
    atomic_write_text(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def drop_torn_tail(path: str | os.PathLike) -> bytes:
    """Truncate everything after the last newline (a line a kill cut short); return what is left."""
    data = Path(path).read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(keep)
    return data[:keep]


def companion_path(path: str | os.PathLike, kind: str) -> Path:
    """`out.jsonl` -> `out.<kind>` beside it, e.g. `out.rejects.jsonl`, `out.stats.json`."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".jsonl") + f".{kind}")


def rejects_path(path: str | os.PathLike) -> Path:
    """Where a stage lists what it skipped from (or did not write to) `path`, with line and reason."""
    return companion_path(path, "rejects.jsonl")


class AppendLog:
    """An append-only JSONL file of records with an `id`, whose ids are known on open (a rerun skips
    them); a torn last line is cut off first. Every append is flushed at once."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.ids: set[str] = set()
        self.records = 0
        if self.path.exists():
            for line in drop_torn_tail(self.path).decode("utf-8").splitlines():
                if line.strip():
                    self.ids.add(json.loads(line)["id"])
                    self.records += 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        self.ids.add(record["id"])
        self.records += 1

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
