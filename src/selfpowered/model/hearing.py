"""What Whisper hears in a clip - its greedy transcript and the encoder states it decoded from -
computed once per clip and shared by everything that listens to that clip.

An evaluation asks the vanilla LSM, the self-powered LSM and the cascade about the same clip, and
the web page asks every served model at once; all of them start from Whisper's greedy decode of
it. `WhisperHearing.hear` decodes each clip once per Whisper model and keeps the result, keyed by
a digest of the clip's samples (`audio_digest`): in memory (bounded by bytes, least recently used
out first) and, given a folder, on disk beside the answer caches (`HearingCache`), so a rerun or
another process hears nothing twice.

The decoder is CTranslate2 (faster-whisper's engine) on a copy of the Whisper folder converted
once (`assets.ctranslate2_folder`): several times PyTorch's speed on a CPU, int8 by default
(`compute_type`). Whisper runs as it was trained: each chunk of up to 30 s padded with silence by
Whisper's own feature extractor, the encoder run once, the decoder greedy and without
timestamps, suppressing what Whisper's generation config suppresses. The window ends `window`
seconds after the speech (10 by default; None: the whole 30 s), which heard as well for a third
of the cost (`DEFAULT_WINDOW`). The encoder output is kept
over the clip's real frames (`Heard.states`, the last layer): an acoustic speech path reads the
same pass the words came from. Decoding stops at `decoded_token_bound` tokens per chunk (8 a
second of audio by default, twice a fast speaker's rate), so a looping decode costs a bounded
amount, and each row is cut at its own bound, so a clip hears the same alone or in any batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfpowered.assets import DEFAULT_ENCODER
from selfpowered.audio import SAMPLE_RATE, AudioInput, as_samples, chunk_samples
from selfpowered.model.feature_cache import FeatureCache
from selfpowered.model.whisper_decoder import DecoderPrompt, decoded_token_bound

logger = logging.getLogger(__name__)
HOP = 160  # Whisper's mel hop at 16 kHz
HEARING_VERSION = 1  # bump when what `hear` returns for the same audio changes
# Seconds of Whisper's silent padding after the speech. The encoder's cost grows with its window
# and was 80% of a clip's hearing over the whole 30 s; with 10 s after the speech Whisper heard the
# demo dev split at WER 0.098 vs 0.100, 3.1x as fast (bench/hearing_window.py, chosen on dev).
DEFAULT_WINDOW = 10.0


def audio_digest(samples: np.ndarray) -> str:
    """The hearing caches' key: a digest of the 16 kHz float32 samples, so the same clip read from
    a file, uploaded to the server or held in memory is heard once."""
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()[:32]


@dataclass(frozen=True)
class Heard:
    """Whisper's greedy reading of one clip (its 30 s chunks joined in order)."""

    text: str  # the transcript, stripped, chunks joined by a space
    tokens: tuple[int, ...]  # Whisper's text token ids, all chunks
    seconds: float  # the clip's duration
    states: np.ndarray | None = None  # (frames, d_model) float16: the encoder's last layer, real frames
    cost: float = 0.0  # seconds it took to hear (its share of its batch): what every user of it is charged

    @property
    def nbytes(self) -> int:
        return 256 + len(self.text) + 8 * len(self.tokens) + (0 if self.states is None else self.states.nbytes)


class HearingCache:
    """`Heard` results on disk: a `FeatureCache` (states in one fp16 file) whose index lines also
    carry the text, the tokens and the duration. Bound to one hearing fingerprint."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str, hidden_size: int) -> None:
        self.store = FeatureCache(folder, fingerprint, hidden_size)
        self.lock = threading.Lock()

    def __getstate__(self) -> dict:  # data-loader workers get a copy: the lock stays behind
        return {"store": self.store}

    def __setstate__(self, state: dict) -> None:
        self.store, self.lock = state["store"], threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self.store

    def get(self, key: str) -> Heard | None:
        with self.lock:
            if key not in self.store:
                return None
            info = self.store.info(key)
            states = self.store.get(key).numpy() if self.store.index[key][1] else None
        return Heard(info["text"], tuple(info["tokens"]), float(info["seconds"]), states, float(info.get("cost", 0.0)))

    def put(self, key: str, heard: Heard) -> None:
        states = heard.states if heard.states is not None else np.zeros((0, self.store.hidden_size), np.float16)
        with self.lock:
            if key not in self.store:
                self.store.append(
                    key, states, text=heard.text, tokens=list(heard.tokens), seconds=heard.seconds, cost=heard.cost
                )


class WhisperHearing:
    """Greedy Whisper decoding of clips through CTranslate2, each clip decoded once (see module)."""

    def __init__(
        self,
        model: str | os.PathLike = DEFAULT_ENCODER,
        compute_type: str = "int8",
        device: str = "cpu",
        tokens_per_second: float = 8.0,
        threads: int = 0,
        cache_dir: str | os.PathLike | None = None,
        memory_mb: float = 256.0,
        window: float | None = DEFAULT_WINDOW,
    ) -> None:
        """`window`: seconds of Whisper's silent padding after the speech (None: the full 30 s
        window Whisper was trained with; each chunk's encoder cost grows with its window)."""
        import ctranslate2
        from tokenizers import Tokenizer
        from transformers import WhisperConfig, WhisperFeatureExtractor

        from selfpowered.assets import ctranslate2_folder, resolve_model

        self.path = resolve_model(model, kind="encoder")
        self.name = str(model)
        self.compute_type, self.tokens_per_second, self.window = compute_type, tokens_per_second, window
        config = WhisperConfig.from_pretrained(str(self.path))
        self.hidden_size = int(config.d_model)
        self.prompt = DecoderPrompt.from_folder(config, self.path)
        self.features = WhisperFeatureExtractor.from_pretrained(str(self.path))
        tokenizer_file = self.path / "tokenizer.json"
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file)) if tokenizer_file.is_file() else None
        self.max_target = int(config.max_target_positions)
        ct2_device = "cuda" if str(device).startswith("cuda") else "cpu"
        self.model = ctranslate2.models.Whisper(
            str(ctranslate2_folder(self.path)), device=ct2_device, compute_type=compute_type, intra_threads=threads
        )
        self.fingerprint = self._fingerprint()
        self.disk = HearingCache(cache_dir, self.fingerprint, self.hidden_size) if cache_dir is not None else None
        self.memory: OrderedDict[str, Heard] = OrderedDict()
        self.memory_bytes, self.memory_limit = 0, int(memory_mb * 2**20)
        self.lock = threading.Lock()  # the memory cache is shared by the server's threads
        self.decoded = 0  # clips decoded (not found in a cache): what a test or a bench counts
        self.decoded_seconds = 0.0  # the time that decoding took

    def _fingerprint(self) -> str:
        """What changes the output: the Whisper weights (their checksums, or file sizes and times),
        the decoding settings and this module's version."""
        checksums = self.path / "selfpowered-checksums.json"
        if checksums.is_file():
            weights = json.loads(checksums.read_text()).get("files", {})
        else:
            weights = {
                p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(self.path.iterdir()) if p.is_file()
            }
        settings = {
            "version": HEARING_VERSION,
            "weights": weights,
            "compute_type": self.compute_type,
            "tokens_per_second": self.tokens_per_second,
            "prompt": list(self.prompt.prompt),
            **({"window": self.window} if self.window is not None else {}),
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]

    # -- the caches ------------------------------------------------------------------------------
    def _remember(self, key: str, heard: Heard) -> None:
        with self.lock:
            if key in self.memory:
                self.memory.move_to_end(key)
                return
            self.memory[key] = heard
            self.memory_bytes += heard.nbytes
            while self.memory_bytes > self.memory_limit and len(self.memory) > 1:
                _, old = self.memory.popitem(last=False)
                self.memory_bytes -= old.nbytes

    def _recall(self, key: str) -> Heard | None:
        with self.lock:
            heard = self.memory.get(key)
            if heard is not None:
                self.memory.move_to_end(key)
                return heard
        heard = self.disk.get(key) if self.disk is not None else None
        if heard is not None:
            self._remember(key, heard)
        return heard

    # -- hearing ---------------------------------------------------------------------------------
    def hear(self, audio: Sequence[AudioInput], batch_size: int = 8) -> list[Heard]:
        """What Whisper hears in each clip (a path or 16 kHz samples), in order; each distinct
        clip is decoded at most once, here or before."""
        return [heard for _, heard in self.hear_keyed(audio, batch_size)]

    def hear_files(self, paths: Sequence[str | os.PathLike], batch_size: int = 8, chunk: int = 64) -> list[str]:
        """Hear every file (a training set: decoding only what the disk cache lacks, `chunk` files
        in memory at a time, with a progress bar); returns each file's key in the cache."""
        return [key for part in self._heard_in_chunks(paths, batch_size, chunk) for key, _ in part]

    def transcribe_files(self, paths: Sequence[str | os.PathLike], batch_size: int = 8, chunk: int = 64) -> list[str]:
        """`hear_files`, returning each file's transcript (what augmentation's `heard_by` answers over)."""
        return [heard.text for heard in self.each_heard(paths, batch_size, chunk)]

    def each_heard(self, paths: Sequence[str | os.PathLike], batch_size: int = 8, chunk: int = 64) -> Iterator[Heard]:
        """`hear_files`, yielding what was heard in each file in order (a corpus's states are never
        all in memory: the sound tagger pools them one clip at a time)."""
        for part in self._heard_in_chunks(paths, batch_size, chunk):
            yield from (heard for _, heard in part)

    def _heard_in_chunks(self, paths, batch_size: int, chunk: int) -> Iterator[list[tuple[str, Heard]]]:
        """(key, heard) of `chunk` files at a time, with a progress bar: a corpus never in memory at once."""
        from tqdm import tqdm

        with tqdm(total=len(paths), desc="hearing (Whisper, once per clip)", unit=" clip") as bar:
            for start in range(0, len(paths), chunk):
                part = paths[start : start + chunk]
                yield self.hear_keyed(part, batch_size)
                bar.update(len(part))

    def hear_keyed(self, audio: Sequence[AudioInput], batch_size: int = 8) -> list[tuple[str, Heard]]:
        """`hear`, each result with its cache key (`audio_digest` of the samples)."""
        samples = [as_samples(item) for item in audio]
        keys = [audio_digest(s) for s in samples]
        found: dict[str, Heard] = {}
        for key in keys:
            if key not in found and (heard := self._recall(key)) is not None:
                found[key] = heard
        todo = list(dict.fromkeys(key for key in keys if key not in found))
        if todo:
            by_key = dict(zip(keys, samples))
            began = time.perf_counter()
            decoded = self._decode([by_key[k] for k in todo], batch_size)
            self.decoded_seconds += time.perf_counter() - began
            for key, heard in zip(todo, decoded):
                found[key] = heard
                self._remember(key, heard)
                if self.disk is not None:
                    self.disk.put(key, heard)
            self.decoded += len(todo)
        return [(key, found[key]) for key in keys]

    def transcribe(self, audio: Sequence[AudioInput], batch_size: int = 8) -> list[str]:
        """The transcripts alone (plain ASR: corpus checks, the conversion check, the cascade)."""
        return [heard.text for heard in self.hear(audio, batch_size)]

    def _decode(self, clips: Sequence[np.ndarray], batch_size: int) -> list[Heard]:
        chunks, owners = [], []
        for index, samples in enumerate(clips):
            for chunk in chunk_samples(samples):
                chunks.append(chunk)
                owners.append(index)
        # chunks are decoded with others of the same window only, so each hears the same in any batch
        groups: dict[int, list[int]] = {}
        for index, chunk in enumerate(chunks):
            groups.setdefault(self.window_frames(chunk.size), []).append(index)
        pieces: list[tuple[list[int], np.ndarray] | None] = [None] * len(chunks)
        costs = [0.0] * len(clips)
        for width, members in groups.items():
            for start in range(0, len(members), batch_size):
                batch = members[start : start + batch_size]
                began = time.perf_counter()
                for index, piece in zip(batch, self._decode_chunks([chunks[i] for i in batch], width)):
                    pieces[index] = piece
                share = (time.perf_counter() - began) / len(batch)
                for index in batch:
                    costs[owners[index]] += share
        texts: list[list[str]] = [[] for _ in clips]
        tokens: list[list[int]] = [[] for _ in clips]
        states: list[list[np.ndarray]] = [[] for _ in clips]
        for owner, (ids, frames) in zip(owners, pieces):
            texts[owner].append(self.decode_text(ids))
            tokens[owner].extend(ids)
            states[owner].append(frames)
        return [
            Heard(
                " ".join(t for t in text if t).strip(),
                tuple(ids),
                samples.size / SAMPLE_RATE,
                np.concatenate(parts),
                cost,
            )
            for text, ids, parts, samples, cost in zip(texts, tokens, states, clips, costs)
        ]

    def window_frames(self, samples: int) -> int:
        """Mel frames a chunk of `samples` is encoded with: Whisper's whole 30 s window, or (with
        `window`) its speech and `window` seconds of padding, rounded up to a whole second so that
        chunks of similar length share a batch."""
        full = round(30.0 * SAMPLE_RATE / HOP)
        if self.window is None:
            return full
        wanted = -(-samples // HOP) + round(self.window * SAMPLE_RATE / HOP)
        return min(full, -(-wanted // 100) * 100)

    def _decode_chunks(self, chunks: Sequence[np.ndarray], width: int) -> list[tuple[list[int], np.ndarray]]:
        import ctranslate2

        features = self.features(list(chunks), sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        frames = [-(-chunk.size // HOP) for chunk in chunks]  # real mel frames (ceil)
        features = features[..., :width]
        encoded = self.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32)), to_cpu=True
        )
        bounds = [decoded_token_bound((n + 1) // 2, self.tokens_per_second) for n in frames]
        room = self.max_target - len(self.prompt.prompt)
        bounds = [min(bound, room) for bound in bounds]
        # CTranslate2 4.x writes about half of `max_length` new tokens (measured: (L - 1) // 2 for
        # a two-token prompt), so ask for twice the bound; every row is cut at its own bound below
        results = self.model.generate(
            encoded,
            [list(self.prompt.prompt)] * len(chunks),
            beam_size=1,
            max_length=min(self.max_target, 2 * max(bounds) + len(self.prompt.prompt) + 1),
            suppress_blank=True,
            suppress_tokens=list(self.prompt.suppress) or [-1],
        )
        states = np.asarray(encoded)
        out = []
        for row, (result, bound, count) in enumerate(zip(results, bounds, frames)):
            ids = [t for t in result.sequences_ids[0] if t < self.prompt.end][:bound]  # cut at its own bound
            out.append((ids, states[row, : (count + 1) // 2].astype(np.float16)))
        return out

    def decode_text(self, ids: Sequence[int]) -> str:
        if self.tokenizer is None:
            return " ".join(str(i) for i in ids)
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()


class HearingPool:
    """One `WhisperHearing` per (Whisper folder, compute type, window), made on first use: what a
    server or an evaluation shares between every model that hears, so that an LSM built on the
    cascade's Whisper hears what the cascade heard, once. With `cache_root` each keeps its disk
    cache in a subfolder of it."""

    def __init__(self, device: str = "cpu", cache_root: str | os.PathLike | None = None, memory_mb: float = 256.0):
        self.device, self.memory_mb = device, memory_mb
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.hearings: dict[tuple[str, str, float | None], WhisperHearing] = {}

    def get(
        self, whisper: str | os.PathLike, compute_type: str = "int8", window: float | None = DEFAULT_WINDOW
    ) -> WhisperHearing:
        from selfpowered.assets import resolve_model

        folder = resolve_model(whisper, kind="encoder").resolve()
        key = (str(folder), compute_type, window)
        if key not in self.hearings:
            cache = None
            if self.cache_root is not None:
                cache = (
                    self.cache_root / f"{folder.name}-{compute_type}-{'whole' if window is None else f'{window:g}s'}"
                )
            self.hearings[key] = WhisperHearing(
                whisper, compute_type, self.device, cache_dir=cache, memory_mb=self.memory_mb, window=window
            )
        return self.hearings[key]

    def for_model(self, config, whisper_folder: str | os.PathLike) -> WhisperHearing:
        """The hearing of an LSM config (its Whisper, `hearing_compute_type`, `hearing_window`)."""
        return self.get(whisper_folder, config.hearing_compute_type, config.hearing_window)

    @property
    def decoded_seconds(self) -> float:
        return sum(hearing.decoded_seconds for hearing in self.hearings.values())
