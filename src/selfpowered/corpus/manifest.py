"""The ASR manifest (JSON Lines): schema, a validating reader, an atomic writer, rejects.

One row per utterance (docs/architecture.md, "Corpora"):
    {"id": "1089-134686-0000", "audio": "LibriSpeech/test-clean/.../1089-134686-0000.flac",
     "text": "he hoped there would be stew for dinner", "duration": 10.4, "lang": "en", "speaker": "1089"}
`audio` is relative to the manifest's folder or absolute. Extra keys are kept as they are.

Every check that fails rejects that one row with a specific reason (and its line number) into
`<manifest>.rejects.jsonl`; the good rows always survive. Importers build candidate rows and pass
them through the same `check_row`, so a manifest is valid by one definition everywhere.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from selfpowered.config import LimitsConfig, ValidateConfig
from selfpowered.jsonl import iter_jsonl, rejects_path, write_jsonl

KNOWN_FIELDS = ("id", "audio", "text", "duration", "lang", "speaker")


@dataclass
class ManifestRow:
    """One validated utterance."""

    id: str
    audio: str
    text: str
    duration: float
    lang: str = "en"
    speaker: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def audio_path(self, base: Path) -> Path:
        path = Path(self.audio)
        return path if path.is_absolute() else base / path

    def to_json(self) -> dict[str, Any]:
        row = {"id": self.id, "audio": self.audio, "text": self.text, "duration": round(self.duration, 3)}
        row["lang"] = self.lang
        if self.speaker is not None:
            row["speaker"] = self.speaker
        row.update(self.extra)
        return row


@dataclass
class Reject:
    """A rejected record: where it was, which id (if any) and exactly why."""

    line: int
    id: str | None
    reason: str
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"line": self.line, "id": self.id, "reason": self.reason}
        if self.source:
            row["source"] = self.source
        return row


@dataclass
class ManifestReport:
    rows: list[ManifestRow]
    rejects: list[Reject]
    lines: int

    def summary(self) -> dict[str, Any]:
        hours = sum(row.duration for row in self.rows) / 3600
        return {
            "lines": self.lines,
            "valid": len(self.rows),
            "rejected": len(self.rejects),
            "hours": round(hours, 3),
            "speakers": len({row.speaker for row in self.rows if row.speaker is not None}),
            "reject_reasons": dict(Counter(reject.reason.split(":")[0] for reject in self.rejects)),
        }


class SeenIds:
    """Remembers ids and where they were first seen, to reject duplicates with a pointer."""

    def __init__(self) -> None:
        self.first_line: dict[str, int] = {}

    def claim(self, row_id: str, line: int) -> str | None:
        if row_id in self.first_line:
            return f"duplicate id {row_id!r} (first seen on line {self.first_line[row_id]})"
        self.first_line[row_id] = line
        return None


def measure_audio(path: Path, limits: LimitsConfig) -> tuple[float | None, str | None]:
    """(duration in seconds, None) or (None, reason the audio is unusable)."""
    import numpy as np
    import soundfile as sf

    if not path.is_file():
        return None, f"audio file not found: {path}"
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        return None, f"audio file does not decode: {path} ({exc})"
    if info.samplerate < limits.min_sample_rate:
        return None, f"sample rate {info.samplerate} Hz is below {limits.min_sample_rate} Hz: {path}"
    if info.frames == 0:
        return None, f"audio file is empty: {path}"
    if limits.decode:
        try:
            samples, _ = sf.read(str(path), dtype="float32")
        except (sf.LibsndfileError, RuntimeError) as exc:
            return None, f"audio file does not decode: {path} ({exc})"
        if not np.isfinite(samples).all():
            return None, f"audio holds NaN or infinite samples: {path}"
    return info.frames / info.samplerate, None


def check_row(
    raw: Any, base: Path, limits: LimitsConfig, seen: SeenIds, line: int
) -> tuple[ManifestRow | None, str | None]:
    """Validate one parsed record; return (row, None) or (None, reason)."""
    if not isinstance(raw, dict):
        return None, f"record is not a JSON object (got {type(raw).__name__})"
    for name in ("id", "audio", "text"):
        if name not in raw:
            return None, f"missing field {name!r}"
    row_id, audio, text = raw["id"], raw["audio"], raw["text"]
    if not isinstance(row_id, str) or not row_id.strip():
        return None, "field 'id' must be a non-empty string"
    if not isinstance(audio, str) or not audio.strip():
        return None, "field 'audio' must be a non-empty string"
    if not isinstance(text, str) or not text.strip():
        return None, "empty transcript (field 'text')"
    duration = raw.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))):
        return None, f"field 'duration' must be a number, got {duration!r}"
    if duration is not None and not math.isfinite(duration):
        return None, f"field 'duration' must be finite, got {duration!r}"
    for name in ("lang", "speaker"):
        if raw.get(name) is not None and not isinstance(raw[name], (str, int)):
            return None, f"field {name!r} must be a string"
    duplicate = seen.claim(row_id, line)
    if duplicate:
        return None, duplicate
    row = ManifestRow(
        id=row_id,
        audio=audio,
        text=" ".join(text.split()),
        duration=float(duration) if duration is not None else float("nan"),
        lang=str(raw.get("lang") or "en"),
        speaker=str(raw["speaker"]) if raw.get("speaker") is not None else None,
        extra={k: v for k, v in raw.items() if k not in KNOWN_FIELDS},
    )
    if limits.check_audio:
        measured, problem = measure_audio(row.audio_path(base), limits)
        if problem:
            return None, problem
        if duration is not None and abs(measured - duration) > limits.duration_tolerance:
            return None, f"field 'duration' says {duration:.2f} s but the audio lasts {measured:.2f} s"
        row.duration = measured
    elif duration is None:
        return None, "missing field 'duration' (and audio checks are off, so it cannot be measured)"
    if not limits.min_duration <= row.duration <= limits.max_duration:
        return None, (
            f"duration {row.duration:.2f} s is outside [{limits.min_duration}, {limits.max_duration}] s "
            "(see the duration limits)"
        )
    return row, None


def read_manifest(path: str | Path, limits: LimitsConfig | None = None, progress: bool = False) -> ManifestReport:
    """Read and validate every line; bad lines become rejects, good lines are kept."""
    path = Path(path)
    if not path.is_file():
        from selfpowered.errors import SelfPoweredError

        raise SelfPoweredError(f"{path}: manifest not found")
    limits = limits or LimitsConfig()
    rows, rejects, seen, lines = [], [], SeenIds(), 0
    records = iter_jsonl(path)
    if progress:
        records = tqdm(records, desc=f"validating {path.name}", unit=" lines")
    for number, raw, error in records:
        lines += 1
        if error:
            rejects.append(Reject(number, None, error))
            continue
        row, reason = check_row(raw, path.parent, limits, seen, number)
        if row is None:
            rejects.append(Reject(number, raw.get("id") if isinstance(raw, dict) else None, reason))
        else:
            rows.append(row)
    return ManifestReport(rows, rejects, lines)


def write_manifest(path: str | Path, rows: Iterable[ManifestRow], base: Path | None = None) -> None:
    """Write rows atomically; with `base`, audio paths are rewritten relative to the new file's folder."""
    path = Path(path)
    out = []
    for row in rows:
        record = row.to_json()
        if base is not None:
            # relative (with ../ where needed) so a corpus folder can be moved as a whole
            record["audio"] = os.path.relpath(row.audio_path(base).resolve(), path.parent.resolve())
        out.append(record)
    write_jsonl(path, out)


def write_rejects(manifest: str | Path, rejects: list[Reject]) -> Path:
    """`<manifest>.rejects.jsonl` (written even when empty, so a rerun never shows stale rejects)."""
    target = rejects_path(manifest)
    write_jsonl(target, (reject.to_json() for reject in rejects))
    return target


def validate_manifest(config: ValidateConfig) -> tuple[ManifestReport, Path]:
    """`selfpowered corpus validate`: check every line, list the rejects beside the manifest and,
    with `output`, write the valid rows; returns the report and the rejects file."""
    report = read_manifest(config.manifest, config.limits, progress=True)
    rejects = write_rejects(config.manifest, report.rejects)
    if config.output:
        write_manifest(config.output, report.rows, base=Path(config.manifest).parent)
    return report, rejects
