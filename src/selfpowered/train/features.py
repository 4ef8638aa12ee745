"""Encoder feature cache: run the frozen encoder once per audio file, keep its output on disk.

The encoder is frozen, so encoding the same audio every epoch is pure waste (on the CPU it is
most of a training step). The cache stores each file's encoder states over its real frames only,
in fp16, appended to one flat `features.f16` file that is read back memory-mapped; `index.jsonl`
maps an audio key (the resolved audio path) to (offset, frames). `meta.json` holds the encoder
*fingerprint* (a hash of its config, feature-extractor settings and weights), so a cache made by
another encoder is refused with a clear error instead of silently feeding wrong features.

Building is resumable: data is appended first, its index line after; on open, data past the last
indexed byte (a kill between the two) is truncated away.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from selfpowered.atomic import atomic_write_text
from selfpowered.audio import LogMelExtractor
from selfpowered.errors import SelfPoweredError
from selfpowered.jsonl import drop_torn_tail, iter_jsonl
from selfpowered.model.encoder import SpeechEncoder, decoder_token_rate, featurize

DATA_FILE, INDEX_FILE, META_FILE = "features.f16", "index.jsonl", "meta.json"
CACHE_VERSION = 1


def encoder_fingerprint(encoder: SpeechEncoder, mel: LogMelExtractor) -> str:
    """sha256 of the encoder's config, the feature extractor's settings and every weight (with
    `speech_states: decoder` the decoder's weights and decoding settings too: its states are cached)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(encoder.config.to_dict(), sort_keys=True, default=str).encode())
    if encoder.decoder is not None:
        digest.update(json.dumps(encoder.decoder.settings(), sort_keys=True).encode())
    digest.update(json.dumps(mel.feature_extractor.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


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
        self._recover()
        self._memmap: np.memmap | None = None

    def _recover(self) -> None:
        index_path, data_path = self.folder / INDEX_FILE, self.folder / DATA_FILE
        end = 0
        if index_path.is_file():
            for line in drop_torn_tail(index_path).decode().splitlines():
                record = json.loads(line)
                self.index[record["key"]] = (record["offset"], record["frames"])
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

    def append(self, key: str, states: torch.Tensor) -> None:
        data = states.detach().to(torch.float16).cpu().contiguous().numpy()
        if data.ndim != 2 or data.shape[1] != self.hidden_size:
            raise ValueError(f"expected (frames, {self.hidden_size}) states, got {data.shape}")
        data_path = self.folder / DATA_FILE
        with open(data_path, "ab") as handle:
            offset = handle.tell()
            handle.write(data.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        with open(self.folder / INDEX_FILE, "a") as handle:
            handle.write(json.dumps({"key": key, "offset": offset, "frames": int(data.shape[0])}) + "\n")
        self.index[key] = (offset, int(data.shape[0]))


def open_cache(folder: str | os.PathLike, encoder: SpeechEncoder, mel: LogMelExtractor) -> FeatureCache:
    """The cache folder for this encoder (refuses a cache built by another encoder)."""
    return FeatureCache(folder, encoder_fingerprint(encoder, mel), encoder.hidden_size)


@torch.no_grad()
def build_feature_cache(
    encoder: SpeechEncoder,
    mel: LogMelExtractor,
    audio_paths: Iterable[str | os.PathLike],
    folder: str | os.PathLike,
    batch_size: int = 8,
) -> dict:
    """Encode every audio file not yet cached; returns counts and timing. Needs only the encoder
    and its feature extractor: the LLM is not loaded (`SpeechLM.encoder` / `.mel` work too)."""
    started = time.perf_counter()
    cache = open_cache(folder, encoder, mel)
    keys = list(dict.fromkeys(audio_key(path) for path in audio_paths))  # unique, in order
    todo = [key for key in keys if key not in cache]
    was_training = encoder.training
    encoder.eval()
    try:
        for start in tqdm(range(0, len(todo), batch_size), desc="encoding", unit=" batch", disable=not todo):
            batch = todo[start : start + batch_size]
            states, lengths = encoder(**featurize(mel, batch))
            for key, state, length in zip(batch, states, lengths.tolist()):
                cache.append(key, state[:length])
    finally:
        encoder.train(was_training)
    return {
        "cached_before": len(keys) - len(todo),
        "encoded": len(todo),
        "total": len(cache),
        "seconds": round(time.perf_counter() - started, 2),
    }


def audio_paths_of(jsonl: str | os.PathLike) -> list[Path]:
    """Audio files named by a manifest or a samples file (`audio` relative to the file or absolute)."""
    jsonl = Path(jsonl)
    if not jsonl.is_file():
        raise SelfPoweredError(f"{jsonl}: file not found")
    paths = []
    for number, record, error in iter_jsonl(jsonl):
        if error or not isinstance(record, dict) or not isinstance(record.get("audio"), str):
            raise SelfPoweredError(f"{jsonl}:{number}: {error or 'no string field audio'}")
        audio = Path(record["audio"])
        paths.append(audio if audio.is_absolute() else jsonl.parent / audio)
    return paths


def build_features(config) -> dict:
    """`selfpowered features` (config: `FeaturesConfig`): encode every audio file that the given
    manifests or sample files name into the cache; needs only the encoder, not the LLM."""
    from selfpowered.assets import resolve_model

    path = resolve_model(config.encoder, kind="encoder")
    # the decoder's states are cached, decoded as the LSM would (its token budget is in the fingerprint)
    encoder = SpeechEncoder.from_pretrained(path, decoder_token_rate(config)).to(config.device)
    audio = [audio for item in config.inputs for audio in audio_paths_of(item)]
    return build_feature_cache(encoder, LogMelExtractor.from_pretrained(path), audio, config.cache, config.batch_size)
