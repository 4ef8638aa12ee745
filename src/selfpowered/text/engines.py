"""Text generators behind one interface: a local transformers model (`hf`, `model.generation`:
the serving engine's continuous batching) or any OpenAI-compatible chat-completions server
(`openai`, here: vLLM, SGLang, llama.cpp server, TGI).

`generate(requests)` yields results as they finish (not in request order), so the run loop can
write each one at once and a kill loses at most the batch in flight.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

from selfpowered.errors import SelfPoweredError


@dataclass(frozen=True)
class GenerationRequest:
    id: str
    prompt: str  # the user turn: "{instruction}: {transcript}"
    # 0 = greedy (the default everywhere); above 0 the answer is sampled at this temperature from a
    # stream seeded by `seed` alone, so the same request gets the same answer in any batch, on resume
    temperature: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class GenerationResult:
    id: str
    text: str
    finish_reason: str  # "stop", "length" or "error"
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


class TextGenerator(Protocol):
    model_id: str

    def count_prompt_tokens(self, prompt: str) -> int | None:
        """Tokens of the rendered prompt, or None when the engine cannot tell before asking."""

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        """Answers (greedy unless a request asks for a temperature), yielded as they complete."""

    def describe(self) -> dict:
        """The engine, model, weights' sha256 (when known) and decoding settings, for data cards."""


class OpenAIGenerator:
    """Chat completions over HTTP with a bounded pool of concurrent requests and retries (with
    exponential backoff and jitter) on 429, 5xx, timeouts and dropped connections."""

    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        max_new_tokens: int = 225,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self.max_new_tokens, self.concurrency = max_new_tokens, concurrency
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.model_id = model or self._served_model()

    def _served_model(self) -> str:
        """Ask the server what it serves; this is also the reachability check, done once up front."""
        import httpx

        try:
            response = self.client.get("/models", timeout=10)
        except httpx.HTTPError as exc:
            raise SelfPoweredError(
                f"cannot reach the OpenAI-compatible server at {self.base_url} ({type(exc).__name__}: {exc}); "
                "is it running, and does the URL end in /v1?"
            ) from exc
        if response.status_code != 200:
            raise SelfPoweredError(f"{self.base_url}/models answered {response.status_code}: {response.text[:200]}")
        models = response.json().get("data") or []
        if not models:
            raise SelfPoweredError(f"{self.base_url}/models lists no model; pass the model name explicitly")
        return str(models[0]["id"])

    def count_prompt_tokens(self, prompt: str) -> None:
        return None  # the server applies its own template; it reports usage.prompt_tokens after

    def describe(self) -> dict:
        """What a data card records: the server and model (its weights are the server's to name)."""
        return {
            "engine": "openai",
            "model": self.model_id,
            "server": self.base_url,
            "weights_sha256": None,
            "decoding": {"temperature": 0.0, "max_new_tokens": self.max_new_tokens},
        }

    def _post(self, request: GenerationRequest) -> GenerationResult:
        import httpx

        payload = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": request.prompt}],
            "max_tokens": self.max_new_tokens,
            "temperature": request.temperature,
        }
        if request.temperature > 0:
            payload["seed"] = request.seed  # vLLM, SGLang and llama.cpp honour a per-request seed
        problem = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.post("/chat/completions", json=payload)
                if response.status_code == 200:
                    body = response.json()
                    choice = body["choices"][0]
                    usage = body.get("usage") or {}
                    return GenerationResult(
                        request.id,
                        (choice["message"].get("content") or "").strip(),
                        choice.get("finish_reason") or "stop",
                        int(usage.get("prompt_tokens", 0)),
                        int(usage.get("completion_tokens", 0)),
                    )
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in self.RETRY_STATUS:
                    break
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.max_retries:
                time.sleep(self.backoff_s * 2**attempt * (0.5 + random.random()))
        return GenerationResult(request.id, "", "error", 0, 0, error=f"after {attempt + 1} attempts: {problem}")

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending: set[Future] = set()
            for request in requests:  # keep at most `concurrency` requests in flight
                pending.add(pool.submit(self._post, request))
                if len(pending) >= self.concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
