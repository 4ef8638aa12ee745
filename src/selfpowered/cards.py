"""Data cards: what made a file, written beside it, so the answer to "which model generated the
training data?" is in the data.

- `<samples>.card.json` beside every augmentation output: the LLM that wrote the targets (name and
  sha256 of its weights, or the server it answered from), the decoding settings, the task library
  and the sha256 of its content, the manifest and its sha256, and counts kept / rejected.
- `card.json` in every trained checkpoint: the base encoder and LLM (with their weights' sha256),
  the training files with their sha256 and their own cards, and the recipe.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from selfpowered.atomic import atomic_write_text
from selfpowered.jsonl import companion_path

CARD_FILE = "card.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=16)
def _weights_digest(folder: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def weights_sha256(folder: str | os.PathLike) -> str:
    """sha256 over a model folder's weight files (names and contents); cached while they are unchanged."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _weights_digest(str(folder), stamp)


def card_path(samples: str | os.PathLike) -> Path:
    return companion_path(samples, "card.json")


def write_card(path: str | os.PathLike, card: dict[str, Any]) -> Path:
    card = {**card, "written": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    atomic_write_text(path, json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    return Path(path)


def read_card(path: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def data_file_entry(path: str | os.PathLike) -> dict[str, Any]:
    """A training file as a card records it: path, sha256, line count, and its own card if any."""
    path = Path(path)
    with open(path, "rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return {"path": str(path), "sha256": sha256_file(path), "lines": lines, "card": read_card(card_path(path))}


def checkpoint_card(model, config, data_files: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card of a trained checkpoint: bases (with weights' sha256), training files (with their
    own cards), the recipe (the stage config as it ran) and what the run reports in `extra`."""
    from selfpowered.assets import resolve_model

    def base(name: str | None, kind: str) -> dict[str, Any]:
        if not name or name.startswith("./"):
            return {"name": name, "weights_sha256": None}
        return {"name": name, "weights_sha256": weights_sha256(resolve_model(name, kind=kind))}

    encoder, llm = base(model.config.encoder_name_or_path, "encoder"), base(model.config.llm_name_or_path, "llm")
    init_from = getattr(config, "init_from", None)
    return {
        "kind": "checkpoint",
        "base": {"encoder": encoder["name"], "llm": llm["name"]},
        "base_weights_sha256": {"encoder": encoder["weights_sha256"], "llm": llm["weights_sha256"]},
        "init_from": {"path": init_from, "card": read_card(Path(init_from) / CARD_FILE)} if init_from else None,
        "training_data": [data_file_entry(path) for path in data_files],
        "recipe": config.model_dump(mode="json"),
        **(extra or {}),
    }


def summary_line(card: dict[str, Any] | None) -> str:
    """One line for reports: who wrote the training targets, with what, how many were kept."""
    if not card:
        return "no data card (made before cards existed, or outside selfpowered)"
    parts = []
    for entry in card.get("training_data", []):
        data = entry.get("card") or {}
        generator = data.get("generator") or {}
        who = generator.get("model") or "no LLM (transcripts)"
        sha = (generator.get("weights_sha256") or "")[:12]
        library = data.get("task_library") or {}
        counts = data.get("counts") or {}
        attempts = data.get("verify_attempts", 1)
        parts.append(
            f"{Path(entry['path']).name}: {entry['lines']} samples, targets by {who}"
            + (f" (sha256 {sha}…)" if sha else "")
            + (f" over what {data['heard_by']} heard" if data.get("heard_by") else "")
            + (f", tasks {library.get('name')} #{library.get('sha256', '')[:8]}" if library else "")
            + (f", kept {counts.get('samples')} / rejected {counts.get('rejects')}" if counts else "")
            + (f", constrained answers tried up to {attempts}x" if attempts > 1 else "")
        )
    base = card.get("base", {})
    return f"base {base.get('encoder')} + {base.get('llm')}; " + "; ".join(parts)
