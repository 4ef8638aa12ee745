"""`ServedModel`: what the decoding engine needs of a model - a prompt batch and its embeddings, an
LLM, stop tokens - for an LSM (its speech path, or text mode) and for the cascade (Whisper hears,
then the same kind of LLM answers `text_prompt(instruction, transcript)` in text mode).

The prompt limits live here too (`prompt_problem`): the LLM's context, and a server's bound on one
prefill, checked on every prompt before any model work.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from selfpowered.model.prompting import PromptBuilder, plan_layout
from selfpowered.model.speech_tokens import reads_transcript
from selfpowered.text.tasks import text_prompt

if TYPE_CHECKING:
    from selfpowered.model.engine import Request


class ServedModel:
    """What the engine needs of a model: make a prompt batch, embed it, an LLM, stop tokens.

    `kind` "lsm": a SpeechLM (audio through its speech path, or text mode); "cascade": Whisper
    hears the clip, then the LLM answers `text_prompt(instruction, transcript)` in text mode (a
    request without audio is answered as its instruction alone: the text baseline). A
    transcript-reading LSM and the cascade hear through a `WhisperHearing`; give them the same one
    and each clip is decoded once for both."""

    def __init__(self, name: str, kind: str, llm, tokenizer, prompt: PromptBuilder, lsm=None, hearing=None) -> None:
        self.name, self.kind, self.llm, self.tokenizer, self.prompt = name, kind, llm, tokenizer, prompt
        self.lsm, self.hearing = lsm, hearing
        self.stop_ids = prompt.stop_token_ids()
        self.lock = threading.Lock()  # eval and the server may share one: one batch at a time
        self.max_prompt_tokens: int | None = None  # a server's bound on one prefill (None: the context)

    @property
    def context_window(self) -> int:
        """The LLM's context: prompt and answer together (max_position_embeddings)."""
        config = getattr(self.llm, "config", None)
        return int(getattr(config, "max_position_embeddings", 0) or 2048)

    def prompt_problem(self, prompt_tokens: int, max_tokens: int) -> str | None:
        """Why a prompt of this length with this answer budget cannot run (None: it can), in the
        words vLLM's OpenAI server uses: both numbers, and the limit."""
        context = self.context_window
        if prompt_tokens + max_tokens > context:
            return (
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages and audio, {max_tokens} in the "
                "completion). Please reduce the length of the messages, the audio or the completion."
            )
        if self.max_prompt_tokens is not None and prompt_tokens > self.max_prompt_tokens:
            return (
                f"The prompt has {prompt_tokens} tokens (text and speech); this server accepts at most "
                f"{self.max_prompt_tokens} per request (--set max_prompt_tokens=...)."
            )
        return None

    @classmethod
    def from_lsm(cls, name: str, lsm, merge_lora: bool = True, hearing=None) -> ServedModel:
        lsm.eval()
        if merge_lora and lsm.is_lora:
            lsm.llm.merge_adapter()  # LoRA folded into the weights (reversible: see adapter_off)
        if hearing is not None and reads_transcript(lsm.config):
            lsm.use_hearing(hearing)
        return cls(name, "lsm", lsm.llm, lsm.tokenizer, lsm.prompt, lsm=lsm, hearing=lsm.hearing)

    @classmethod
    def cascade(cls, name: str, hearing, llm, tokenizer, prompt: PromptBuilder) -> ServedModel:
        return cls(name, "cascade", llm.eval(), tokenizer, prompt, hearing=hearing)

    @contextlib.contextmanager
    def adapter_off(self) -> Iterator[None]:
        """Answer as the base LLM: unmerge and switch off the LoRA adapter, restore it after."""
        llm = self.llm
        if not hasattr(llm, "peft_config"):
            yield
            return
        merged = any(getattr(module, "merged", False) for module in llm.modules())
        if merged:
            llm.unmerge_adapter()
        try:
            with llm.disable_adapter():
                yield
        finally:
            if merged:
                llm.merge_adapter()

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def prepare(self, requests: Sequence[Request]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """A left-padded prompt batch for `requests` and its input embeddings."""
        contexts = [r.context for r in requests]
        audio = [r.audio for r in requests]
        if self.kind == "lsm":
            lsm = self.lsm
            if reads_transcript(lsm.config):
                heard = lsm.hear(audio)
                for request, result in zip(requests, heard):
                    request.transcript = None if result is None else result.text
                inputs = lsm.processor(
                    [r.instruction for r in requests], heard=heard, padding_side="left", contexts=contexts
                )
            else:
                speech = audio if any(a is not None for a in audio) else None
                inputs = lsm.processor(
                    [r.instruction for r in requests], audio=speech, padding_side="left", contexts=contexts
                )
            return inputs, lsm.embed_inputs(inputs)
        present = [r.audio for r in requests if r.audio is not None]
        heard = iter(self.hearing.hear(present) if present else [])
        prompts = []
        for request in requests:
            if request.audio is not None:
                request.transcript = next(heard).text
                prompts.append(text_prompt(request.instruction, request.transcript))
            else:
                prompts.append(request.instruction)
        pieces = [self.prompt.pieces(p, with_speech=False, context=c) for p, c in zip(prompts, contexts)]
        inputs = vars(plan_layout(pieces, [0] * len(pieces), padding_side="left"))
        return inputs, self.llm.get_input_embeddings()(inputs["input_ids"].to(self.device))
