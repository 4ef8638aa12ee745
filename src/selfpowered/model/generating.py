"""Greedy answers from a SpeechLM through transformers' `generate` (the convenience API: one call
for a list of clips or text prompts). Served and evaluated models answer through the
continuous-batching engine instead (`model/engine.py`); both build the same prompt batch."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from selfpowered.audio import AudioInput


class Generation:
    """Mixed into SpeechLM (it holds `llm`, `processor`, `prompt`, `tokenizer`, `prepare`, `embed_inputs`)."""

    @torch.no_grad()
    def generate(
        self,
        audio: AudioInput | Sequence[AudioInput] | None = None,
        instruction: str | Sequence[str] | None = None,
        text: str | Sequence[str] | None = None,
        max_new_tokens: int = 128,
        batch_size: int = 8,
        repetition_penalty: float = 1.0,
        use_adapter: bool = True,
        **generate_kwargs: Any,
    ) -> str | list[str]:
        """Greedy answers. Speech mode: `audio` + `instruction` (one instruction for all, or one
        each). Text mode: `text` alone runs the LLM on the same template with no speech; with
        `use_adapter=False` the LoRA adapter is switched off, giving the base LLM's own answer.
        A single input returns a single string; a list returns a list."""
        single = isinstance(text, str) if text is not None else isinstance(audio, (str, os.PathLike, np.ndarray))
        if text is not None:
            if audio is not None:
                raise ValueError("give either text (text mode) or audio (speech mode), not both")
            prompts = [text] if isinstance(text, str) else list(text)
            clips: list[AudioInput] | None = None
        else:
            if audio is None or instruction is None:
                raise ValueError("speech mode needs both audio and instruction")
            clips = [audio] if single else list(audio)
            prompts = [instruction] * len(clips) if isinstance(instruction, str) else list(instruction)
            if len(prompts) != len(clips):
                raise ValueError(f"{len(clips)} audio inputs but {len(prompts)} instructions")
        answers: list[str] = []
        for start in range(0, len(prompts), batch_size):
            window = slice(start, start + batch_size)
            inputs = self.prepare(prompts[window], None if clips is None else clips[window], padding_side="left")
            answers += self.generate_from_inputs(
                inputs, max_new_tokens, repetition_penalty, use_adapter, **generate_kwargs
            )
        return answers[0] if single else answers

    @torch.no_grad()
    def generate_from_inputs(
        self,
        inputs: dict[str, torch.Tensor],
        max_new_tokens: int = 128,
        repetition_penalty: float = 1.0,
        use_adapter: bool = True,
        **options: Any,
    ) -> list[str]:
        """Greedy answers (unless `options` ask for sampling) to a left-padded processor batch."""
        was_training = self.training
        self.eval()
        settings = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "repetition_penalty": repetition_penalty,
            "eos_token_id": self.prompt.stop_token_ids(),
            "pad_token_id": self.tokenizer.pad_token_id,
            **options,
        }
        switch = self.llm.disable_adapter() if (self.is_lora and not use_adapter) else contextlib.nullcontext()
        try:
            with switch:
                embeds = self.embed_inputs(inputs)
                mask = inputs["attention_mask"].to(embeds.device)
                with warnings.catch_warnings():  # the answer-only n-gram rule is the one we want
                    warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*inputs_embeds.*")
                    tokens = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, **settings)
        finally:
            self.train(was_training)
        return self.processor.batch_decode(tokens)
