"""Plain Whisper speech recognition with a converted Hugging Face Whisper folder.

Used to prove a conversion on real speech, to check that synthesised corpora are intelligible,
and as the first half of the cascade baseline (ASR text -> the same LLM).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from selfpowered.assets import DEFAULT_ENCODER
from selfpowered.audio import AudioInput, as_samples, chunk_samples


class WhisperTranscriber:
    """Greedy Whisper transcription; audio over 30 s is transcribed chunk by chunk and joined."""

    def __init__(
        self, model_name_or_path: str | os.PathLike = DEFAULT_ENCODER, device: str = "cpu", language: str = "en"
    ) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from selfpowered.assets import resolve_model

        path = resolve_model(model_name_or_path, kind="encoder")
        self.processor = WhisperProcessor.from_pretrained(str(path))
        self.model = WhisperForConditionalGeneration.from_pretrained(str(path)).to(device).eval()
        self.device = device
        # Multilingual checkpoints are told the language: left to detect it, whisper-base loops on
        # repeated words for some clips. English-only checkpoints take no language token at all.
        multilingual = bool(getattr(self.model.generation_config, "is_multilingual", False))
        self.language_options = {"language": language, "task": "transcribe"} if multilingual else {}

    @torch.no_grad()
    def transcribe(self, audio: Sequence[AudioInput], batch_size: int = 8, max_new_tokens: int = 220) -> list[str]:
        """One transcript per input (path or 16 kHz array)."""
        chunks, owners = [], []
        for index, item in enumerate(audio):
            for chunk in chunk_samples(as_samples(item)):
                chunks.append(chunk)
                owners.append(index)
        pieces: list[str] = []
        for start in range(0, len(chunks), batch_size):
            batch = chunks[start : start + batch_size]
            features = self.processor(batch, sampling_rate=16_000, return_tensors="pt").input_features
            tokens = self.model.generate(
                features.to(self.device), max_new_tokens=max_new_tokens, **self.language_options
            )
            pieces.extend(text.strip() for text in self.processor.batch_decode(tokens, skip_special_tokens=True))
        texts = [""] * len(audio)
        for owner, piece in zip(owners, pieces):
            texts[owner] = f"{texts[owner]} {piece}".strip()
        return texts
