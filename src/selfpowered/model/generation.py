"""`HFGenerator`: a local causal LM answering text prompts through the serving engine.

Augmentation (the self-powered targets), the LLM-written text source, and evaluation's cascade
and text baselines all answer through the same continuous-batching engine as the LSMs
(`model.engine.DecodeBatch`: a KV cache, rows join as others finish, a finished row leaves at
once), so what they cost compares like with like, and a greedy answer is the same alone or in
any batch. Prompts go through the same `PromptBuilder` as the SpeechLM's text mode; prompts are
admitted shortest first, so rows prefilled together need little padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from selfpowered.assets import DEFAULT_LLM
from selfpowered.model.engine import Request, decode_stream
from selfpowered.model.served import ServedModel
from selfpowered.text.engines import GenerationRequest, GenerationResult, TextGenerator


class HFGenerator:
    """A local transformers causal LM behind the `TextGenerator` interface. Sampled rows (a
    temperature above 0) draw from a stream seeded by their own seed alone, so a resumed run asks
    exactly what a killed one asked."""

    def __init__(
        self,
        model: str = DEFAULT_LLM,
        max_new_tokens: int = 225,
        max_batch: int = 128,
        prompt_format: str = "chat_template",
        device: str = "cpu",
        repetition_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
        llm=None,
        tokenizer=None,
    ) -> None:
        """`llm` / `tokenizer`: an already loaded model to answer with (an evaluation shares the
        base LLM between its baselines); else `model` is loaded."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from selfpowered.assets import resolve_model
        from selfpowered.model.prompting import PromptBuilder

        path = resolve_model(model, kind="llm")
        self.model_id, self.path = str(model), path
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(path))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model = llm if llm is not None else AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)
        self.model.eval()
        self.prompt = PromptBuilder(self.tokenizer, prompt_format)
        self.served = ServedModel(self.model_id, "cascade", self.model, self.tokenizer, self.prompt)
        self.max_new_tokens, self.max_batch = max_new_tokens, max_batch
        self.device, self.repetition_penalty = device, repetition_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size  # loop guard, text/decoding.py

    def describe(self) -> dict:
        """What a data card records about this engine: the model, its weights' sha256, decoding."""
        from selfpowered.cards import weights_sha256

        return {
            "engine": "hf",
            "model": self.model_id,
            "weights_sha256": weights_sha256(self.path),
            "decoding": {"greedy": True, "max_new_tokens": self.max_new_tokens,
                         "repetition_penalty": self.repetition_penalty,
                         **({"no_repeat_ngram_size": self.no_repeat_ngram_size} if self.no_repeat_ngram_size else {})},
        }  # fmt: skip

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.prompt.pieces(prompt, with_speech=False).prefix_ids

    def count_prompt_tokens(self, prompt: str) -> int:
        return len(self.prompt_ids(prompt))

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        """Answers as they finish (not in request order)."""
        order = sorted(requests, key=lambda r: len(r.prompt))  # shortest first: little padding per prefill
        rows = [
            Request(
                self.model_id,
                request.prompt,
                max_tokens=self.max_new_tokens,
                temperature=request.temperature,
                seed=request.seed,
                no_repeat_ngram_size=self.no_repeat_ngram_size,
                repetition_penalty=self.repetition_penalty,
            )
            for request in order
        ]
        ident = {row.id: request.id for row, request in zip(rows, order)}
        for row in decode_stream(self.served, rows, self.max_batch):
            yield GenerationResult(
                ident[row.id],
                row.text,
                "error" if row.error else ("length" if row.finish_reason == "length" else "stop"),
                row.prompt_tokens,
                len(row.tokens) + (row.finish_reason == "stop"),  # the stop token counts, as before
                error=row.error,
            )

    def answers(self, prompts: Sequence[str]) -> list[str]:
        """Greedy answers to text prompts, in order."""
        by_id = {r.id: r.text for r in self.generate([GenerationRequest(str(i), p) for i, p in enumerate(prompts)])}
        return [by_id[str(i)] for i in range(len(prompts))]


def build_generator(settings) -> TextGenerator:
    """The engine an `AugmentConfig` asks for (the API key is read from its environment variable)."""
    import os

    from selfpowered.errors import SelfPoweredError
    from selfpowered.text.engines import OpenAIGenerator

    if settings.engine == "openai":
        if not settings.server_url:
            raise SelfPoweredError("engine openai needs server_url (--set server_url=http://127.0.0.1:8000/v1)")
        return OpenAIGenerator(
            settings.server_url,
            settings.server_model,
            os.environ.get(settings.api_key_env),
            settings.max_new_tokens,
            settings.concurrency,
            settings.max_retries,
        )
    return HFGenerator(
        settings.llm,
        settings.max_new_tokens,
        settings.max_batch,
        device=settings.device,
        repetition_penalty=settings.repetition_penalty,
    )
