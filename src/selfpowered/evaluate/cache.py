"""Answers cached per (system, suite): OUTPUT/predictions/SYSTEM/SUITE.json, valid while a
fingerprint of the queries, the decoding settings and the system's weights matches, so a killed
evaluation resumes at the suite it was in and adding a model runs only that model."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from tqdm import tqdm

from selfpowered.atomic import atomic_write_text
from selfpowered.evaluate.systems import Query, cost_summary, timed

logger = logging.getLogger(__name__)


def parse_model(spec: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` (named after its folder, or the folder above a `final/`)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name.strip(), path.strip()
    path = Path(spec)
    return (path.parent.name if path.name in ("final", "") else path.name) or spec, spec


def _checkpoint_identity(path: str) -> str:
    folder = Path(path)
    parts = [str(folder.resolve())]
    # the sound tagger changes the prompt (model/sound_tags.py): re-fitting it makes every answer stale
    for name in ("model.safetensors", "adapter/adapter_model.safetensors", "sound_tagger.json"):
        file = folder / name
        if file.is_file():
            stat = file.stat()
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


class PredictionCache:
    """OUTPUT/predictions/SYSTEM/SUITE.json: answers + cost, valid while the fingerprint matches."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def fingerprint(identity: str, queries: list[Query], settings: dict) -> str:
        digest = hashlib.sha256(identity.encode())
        digest.update(json.dumps(settings, sort_keys=True).encode())
        for q in queries:
            digest.update(f"\0{q.key}\0{q.instruction}\0{q.audio}\0{q.transcript}".encode())
            if q.options:  # (absent for open queries: their caches stay valid)
                digest.update(("\0options\0" + "\0".join(q.options)).encode())
        return digest.hexdigest()[:16]

    def path(self, system: str, suite: str) -> Path:
        return self.folder / system / f"{suite}.json"

    def load(self, system: str, suite: str, fingerprint: str) -> dict | None:
        path = self.path(system, suite)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        return data if data.get("fingerprint") == fingerprint else None

    def save(self, system: str, suite: str, fingerprint: str, record: dict) -> None:
        atomic_write_text(self.path(system, suite), json.dumps({"fingerprint": fingerprint, **record}, indent=1) + "\n")


def _predict(
    cache, system_name, identity, suite_name, queries, call, settings, chunk_size, key_suffix="", listening=None
):
    """Cached or fresh answers of one system on one suite, with the measured cost (Whisper's time
    for each clip included, `systems.timed`)."""
    stored_as = suite_name + key_suffix
    fingerprint = cache.fingerprint(identity, queries, settings)
    hit = cache.load(system_name, stored_as, fingerprint)
    if hit is not None:
        logger.info("%s / %s: %d cached answers", system_name, stored_as, len(hit["answers"]))
        return hit["answers"], hit["cost"], True
    answers: list[str] = []
    seconds = 0.0
    with tqdm(total=len(queries), desc=f"{system_name} / {stored_as}", unit=" q") as bar:
        for start in range(0, len(queries), chunk_size):
            chunk = queries[start : start + chunk_size]
            out, took = timed(call, chunk, listening)
            answers.extend(out)
            seconds += took
            bar.update(len(chunk))
    cost = cost_summary(len(answers), seconds, sum(q.duration for q in queries))
    cache.save(
        system_name, stored_as, fingerprint, {"cost": cost, "answers": answers, "keys": [q.key for q in queries]}
    )
    return answers, cost, False
