"""Text generators behind one interface: a local transformers model (`hf`) or any
OpenAI-compatible chat-completions server (`openai`: vLLM, SGLang, llama.cpp server, TGI).

`generate(requests)` yields results as they finish (not in request order), so the run loop can
write each one at once and a kill loses at most the batch in flight.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

from selfpowered.assets import DEFAULT_LLM
from selfpowered.errors import SelfPoweredError
from selfpowered.text.decoding import repeated_ngram_bans


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


class HFGenerator:
    """Local transformers causal LM: prompts through the same PromptBuilder as the SpeechLM's text
    mode, batches sorted by prompt length, left padding, KV cache, a batch size set by a token
    budget (prompt + new tokens per row), and finished rows dropped from the running batch."""

    def __init__(
        self,
        model: str = DEFAULT_LLM,
        max_new_tokens: int = 225,
        token_budget: int = 65536,
        max_batch: int = 256,
        prompt_format: str = "chat_template",
        device: str = "cpu",
        repetition_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from selfpowered.assets import resolve_model
        from selfpowered.model.prompting import PromptBuilder

        path = resolve_model(model, kind="llm")
        self.model_id, self.path = str(model), path
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device).eval()
        self.prompt = PromptBuilder(self.tokenizer, prompt_format)
        self.stop_ids = self.prompt.stop_token_ids()
        self.max_new_tokens, self.token_budget, self.max_batch = max_new_tokens, token_budget, max_batch
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

    def batches(self, requests: Sequence[GenerationRequest]) -> list[list[tuple[GenerationRequest, list[int]]]]:
        """Sort by prompt length (little padding) and cut by the token budget. No grouping by task:
        with finished rows dropped, one large batch amortises the per-step cost best (measured:
        grouping by task was 1.5x slower, bench/RESULTS.md)."""
        encoded = sorted(((r, self.prompt_ids(r.prompt)) for r in requests), key=lambda item: len(item[1]))
        batches: list[list[tuple[GenerationRequest, list[int]]]] = [[]]
        for request, ids in encoded:
            rows = len(batches[-1]) + 1
            if batches[-1] and (rows > self.max_batch or rows * (len(ids) + self.max_new_tokens) > self.token_budget):
                batches.append([])
            batches[-1].append((request, ids))
        return [batch for batch in batches if batch]

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        for batch in self.batches(requests):
            decoded = self.decode(
                [ids for _, ids in batch], [r.temperature for r, _ in batch], [r.seed for r, _ in batch]
            )
            for (request, ids), (tokens, stopped) in zip(batch, decoded):
                yield GenerationResult(
                    request.id,
                    self.tokenizer.decode(tokens[:-1] if stopped else tokens, skip_special_tokens=True).strip(),
                    "stop" if stopped else "length",
                    len(ids),
                    len(tokens),
                )

    def decode(
        self,
        prompts: list[list[int]],
        temperatures: Sequence[float] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[tuple[list[int], bool]]:
        """Batched decoding with a KV cache that *drops finished rows* from the running batch.

        `generate()` keeps computing every row until the last one stops, so a batch costs as much
        as its longest answer times its size; here the work shrinks as answers end. Rows are greedy
        unless their temperature is above 0: those sample by the Gumbel-max trick from a generator
        of their own, seeded by their seed, so a row's draw does not depend on its batch-mates.
        Returns, per prompt, the generated tokens (with the stop token when one came) and whether
        it stopped.
        """
        import torch
        from transformers import DynamicCache
        from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

        pad = self.tokenizer.pad_token_id
        width = max(len(ids) for ids in prompts)
        sequences = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        penalty = RepetitionPenaltyLogitsProcessor(self.repetition_penalty) if self.repetition_penalty != 1.0 else None
        stop = torch.tensor(self.stop_ids, device=self.device)
        cache = DynamicCache()
        active = list(range(len(prompts)))
        outputs: list[list[int]] = [[] for _ in prompts]
        stopped = [False] * len(prompts)
        temperatures = list(temperatures or [0.0] * len(prompts))
        generators = {
            row: torch.Generator(device=self.device).manual_seed(int(seeds[row]) if seeds else 0)
            for row, temperature in enumerate(temperatures)
            if temperature > 0
        }
        # `past_key_values=` works on every transformers we support (>=5.0,<5.30); 5.2x renamed it
        # `cache=` with a deprecation warning until 5.40.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated.*", category=FutureWarning)
            logits = self.model(
                input_ids=sequences,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,  # the vocabulary projection of every prompt position is wasted work
            ).logits[:, -1]
            last_position = positions[:, -1]
            for step in range(self.max_new_tokens):
                if penalty is not None:
                    logits = penalty(sequences, logits)
                for i, row in enumerate(active):  # the loop guard looks at the answer only
                    banned = repeated_ngram_bans(outputs[row], self.no_repeat_ngram_size)
                    if banned:
                        logits[i, banned] = float("-inf")
                next_tokens = logits.argmax(dim=-1)
                for i, row in enumerate(active):
                    if row in generators:  # argmax(logits / T + Gumbel noise) samples softmax(logits / T)
                        uniform = torch.rand(logits.shape[-1], generator=generators[row], device=self.device)
                        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20)))
                        next_tokens[i] = (logits[i].float() / temperatures[row] + gumbel).argmax()
                finished = torch.isin(next_tokens, stop)
                for row, token, done in zip(active, next_tokens.tolist(), finished.tolist()):
                    outputs[row].append(token)
                    stopped[row] = done
                keep = (~finished).nonzero().flatten()
                if keep.numel() == 0 or step == self.max_new_tokens - 1:
                    break
                if keep.numel() < len(active):  # shrink the batch: finished rows cost nothing more
                    cache.batch_select_indices(keep)
                    active = [active[i] for i in keep.tolist()]
                    next_tokens, mask = next_tokens[keep], mask[keep]
                    sequences, last_position = sequences[keep], last_position[keep]
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
                last_position = last_position + 1
                logits = self.model(
                    input_ids=next_tokens[:, None],
                    attention_mask=mask,
                    position_ids=last_position[:, None],
                    past_key_values=cache,
                    use_cache=True,
                ).logits[:, -1]
        return [(tokens, done) for tokens, done in zip(outputs, stopped)]


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


def build_generator(settings) -> TextGenerator:
    """The engine an `AugmentConfig` asks for (the API key is read from its environment variable)."""
    import os

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
        settings.token_budget,
        settings.max_batch,
        device=settings.device,
        repetition_penalty=settings.repetition_penalty,
    )
