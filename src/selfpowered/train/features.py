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

import torch
from tqdm import tqdm

from selfpowered.audio import LogMelExtractor
from selfpowered.errors import SelfPoweredError
from selfpowered.jsonl import iter_jsonl
from selfpowered.model.encoder import SpeechEncoder, decoder_token_rate, featurize
from selfpowered.model.feature_cache import FeatureCache, audio_key


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

    audio = [audio for item in config.inputs for audio in audio_paths_of(item)]
    if config.hearing:  # what a transcript-reading LSM reads: Whisper's transcript and states, once per clip
        from selfpowered.model.hearing import WhisperHearing

        started = time.perf_counter()
        hearing = WhisperHearing(
            config.encoder,
            config.hearing_compute_type,
            config.device,
            cache_dir=config.cache,
            window=config.hearing_window,
        )
        before = len(hearing.disk.store)
        keys = hearing.hear_files(audio, config.batch_size)
        return {
            "cached_before": before,
            "heard": hearing.decoded,
            "total": len(set(keys)),
            "seconds": round(time.perf_counter() - started, 2),
        }
    path = resolve_model(config.encoder, kind="encoder")
    # the decoder's states are cached, decoded as the LSM would (its token budget is in the fingerprint)
    encoder = SpeechEncoder.from_pretrained(path, decoder_token_rate(config)).to(config.device)
    return build_feature_cache(encoder, LogMelExtractor.from_pretrained(path), audio, config.cache, config.batch_size)
