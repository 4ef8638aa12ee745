"""An append-only store of per-clip arrays on disk: what the frozen parts of Whisper made of each
audio file (encoder or decoder states, the transcript it heard), computed once and read back.

The frozen encoder (and, with `speech_states: decoder`, Whisper's decoder) gives the same output
for the same audio every epoch, so computing it again is pure waste (on the CPU it is most of a
training step). The store keeps each key's (frames, hidden) states over the real frames only, in
fp16, appended to one flat `features.f16` file that is read back memory-mapped; `index.jsonl`
maps a key (an audio path, or a content digest of the samples) to (offset, frames) and to any
small fields stored with it (the hearing cache keeps Whisper's text and tokens there).
`meta.json` holds the producer's *fingerprint* (a hash of the model, its settings and weights),
so a store made by another model is refused with a clear error instead of silently feeding
wrong features.

Appending is resumable: data is appended first, its index line after; on open, data past the
last indexed byte (a kill between the two) is truncated away.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from selfpowered.atomic import atomic_write_text
from selfpowered.errors import SelfPoweredError
from selfpowered.jsonl import drop_torn_tail

DATA_FILE, INDEX_FILE, META_FILE = "features.f16", "index.jsonl", "meta.json"
CACHE_VERSION = 1


def audio_key(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


class FeatureCache:
    """Read/append access to one cache folder, bound to one encoder fingerprint."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str, hidden_size: int) -> None:
        self.folder = Path(folder)
        self.fingerprint, self.hidden_size = fingerprint, hidden_size
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / META_FILE
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") != fingerprint:
                raise SelfPoweredError(
                    f"{self.folder}: this feature cache was built with encoder fingerprint {meta.get('fingerprint')} "
                    f"({meta.get('encoder', '?')}); the model's encoder has {fingerprint}. Use another cache folder "
                    "or delete this one"
                )
            if meta.get("hidden_size") != hidden_size or meta.get("version") != CACHE_VERSION:
                raise SelfPoweredError(f"{self.folder}: cache layout {meta} does not fit hidden size {hidden_size}")
        else:
            meta = {
                "version": CACHE_VERSION,
                "fingerprint": fingerprint,
                "hidden_size": hidden_size,
                "dtype": "float16",
            }
            atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
        self.index: dict[str, tuple[int, int]] = {}
        self.fields: dict[str, dict] = {}  # what was stored beside each key's states (may be empty)
        self._recover()
        self._memmap: np.memmap | None = None

    def _recover(self) -> None:
        index_path, data_path = self.folder / INDEX_FILE, self.folder / DATA_FILE
        end = 0
        if index_path.is_file():
            for line in drop_torn_tail(index_path).decode().splitlines():
                record = json.loads(line)
                self.index[record["key"]] = (record["offset"], record["frames"])
                if extra := {k: v for k, v in record.items() if k not in ("key", "offset", "frames")}:
                    self.fields[record["key"]] = extra
                end = max(end, record["offset"] + record["frames"] * self.hidden_size * 2)
        if data_path.is_file() and data_path.stat().st_size > end:  # data whose index line never came
            with open(data_path, "r+b") as handle:
                handle.truncate(end)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def get(self, key: str) -> torch.Tensor:
        """(frames, hidden) fp16 encoder states of one audio file, read from the memory map."""
        if key not in self.index:
            raise KeyError(f"{key} is not in the feature cache {self.folder}; run `selfpowered features` first")
        if self._memmap is None or self._memmap.size * 2 < self._data_end():
            self._memmap = np.memmap(self.folder / DATA_FILE, dtype=np.float16, mode="r")
        offset, frames = self.index[key]
        start = offset // 2
        # a copy: the map is read-only, and a few hundred kB per utterance is cheap next to a step
        data = np.array(self._memmap[start : start + frames * self.hidden_size])
        return torch.from_numpy(data).view(frames, self.hidden_size)

    def _data_end(self) -> int:
        return max((offset + frames * self.hidden_size * 2 for offset, frames in self.index.values()), default=0)

    def info(self, key: str) -> dict:
        """The small fields stored beside `key`'s states (empty when none were)."""
        if key not in self.index:
            raise KeyError(f"{key} is not in the feature cache {self.folder}")
        return self.fields.get(key, {})

    def append(self, key: str, states: torch.Tensor | np.ndarray, **fields) -> None:
        """Store `states` (frames, hidden) under `key`, and `fields` (JSON values) beside them."""
        if isinstance(states, torch.Tensor):
            states = states.detach().to(torch.float16).cpu()
        data = np.ascontiguousarray(np.asarray(states, dtype=np.float16))
        if data.ndim != 2 or data.shape[1] != self.hidden_size:
            raise ValueError(f"expected (frames, {self.hidden_size}) states, got {data.shape}")
        data_path = self.folder / DATA_FILE
        with open(data_path, "ab") as handle:
            offset = handle.tell()
            handle.write(data.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        with open(self.folder / INDEX_FILE, "a") as handle:
            handle.write(json.dumps({"key": key, "offset": offset, "frames": int(data.shape[0]), **fields}) + "\n")
        self.index[key] = (offset, int(data.shape[0]))
        if fields:
            self.fields[key] = fields
