"""The inference engine behind `selfpowered serve` and `eval`: continuous batching over a KV cache.

A `DecodeBatch` holds the rows being decoded for one model. New requests join at any step
(continuous batching): their prompts - chat template, speech embeddings in their slots - are
prefilled as one left-padded batch, and their KV cache is merged into the running one by padding
the shorter on the left, which the attention mask hides. Each step feeds every row's last token
once; a row that finished (stop token, stop string, length, cancelled) leaves the batch at once, so
a long answer never holds short ones back. Left padding, masks and explicit positions make a
row's greedy answer the same alone or in any batch (tests pin it).

The LoRA adapter is merged into the LLM's weights at load: one matrix product per projection, as
a plain LLM costs. `Engine` runs `DecodeBatch`es on one background thread and hands tokens to the
request handlers as they come (streaming).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from selfpowered.errors import SelfPoweredError
from selfpowered.model.prompting import SEGMENT_PAD, SEGMENT_SPEECH, Conversation, PromptBuilder, plan_layout
from selfpowered.text.decoding import repeated_ngram_bans
from selfpowered.text.tasks import text_prompt

logger = logging.getLogger(__name__)
_ids = itertools.count()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """`past_key_values=` works on every transformers we support; 5.2x renamed it `cache=` with a
    deprecation warning per call until 5.40."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated.*", category=FutureWarning)
        yield


@dataclass
class Request:
    """One answer to make. `audio` is 16 kHz mono (None: text mode); `on_event(kind, payload)` is
    called from the engine thread with ("delta", text) while decoding and ("done", self) at the end."""

    model: str
    instruction: str
    audio: np.ndarray | None = None
    context: Conversation | None = None
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    no_repeat_ngram_size: int = 0  # loop guard (text/decoding.py); 0 = off
    repetition_penalty: float = 1.0  # > 1 discourages tokens of the prompt and the answer (as transformers does)
    stop: Sequence[str] = ()
    on_event: Callable[[str, Any], None] | None = None
    id: int = field(default_factory=lambda: next(_ids))
    # filled in by the engine
    prompt_tokens: int = 0
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    error: str | None = None
    status: int = 500  # of an error: 400 when the request itself is at fault (too long a prompt)
    cancelled: bool = False
    transcript: str | None = None  # what Whisper heard in the audio (cascade, transcript-reading LSM)
    _emitted: int = 0
    _generator: torch.Generator | None = None
    _prompt_ids: frozenset[int] = frozenset()  # the prompt's tokens, for repetition_penalty

    def emit(self, kind: str, payload: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, payload)


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
        if hearing is not None and lsm.config.speech_tokens == "transcript":
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
            if lsm.config.speech_tokens == "transcript":
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


def _sample(logits: torch.Tensor, request: Request) -> int:
    """Greedy at temperature 0; else temperature + nucleus (top_p) sampling from the request's seed.
    Tokens that would repeat an n-gram of the answer are banned first when the request asks."""
    banned = repeated_ngram_bans(request.tokens, request.no_repeat_ngram_size)
    penalised = request.repetition_penalty != 1.0 and (request.tokens or request._prompt_ids)
    if banned or penalised:
        logits = logits.clone()
    if penalised:  # CTRL's rule, as transformers applies it: divide a positive score, multiply a negative
        seen = torch.tensor(sorted(request._prompt_ids | set(request.tokens)), device=logits.device)
        scores = logits[seen]
        logits[seen] = torch.where(scores > 0, scores / request.repetition_penalty, scores * request.repetition_penalty)
    if banned:
        logits[banned] = float("-inf")
    if request.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / request.temperature, dim=-1)
    if request.top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        keep = ordered.cumsum(0) - ordered < request.top_p  # the smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
    if request._generator is None:
        request._generator = torch.Generator().manual_seed(
            request.seed if request.seed is not None else int(torch.randint(2**31, ()))
        )
    return int(torch.multinomial(probs.cpu(), 1, generator=request._generator))


class DecodeBatch:
    """The rows being decoded for one model, with their KV cache (see the module docstring)."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.rows: list[Request] = []
        self.cache = None
        self.mask: torch.Tensor | None = None  # (rows, cached length) 1 = real
        self.positions: torch.Tensor | None = None  # (rows,) position id of the next token
        self.last: torch.Tensor | None = None  # (rows,) the token to feed next

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def admit(self, requests: Sequence[Request]) -> None:
        """Prefill new requests and merge them into the running batch; failures end those requests."""
        from transformers import DynamicCache

        try:
            inputs, embeds = self.served.prepare(requests)
        except (SelfPoweredError, ValueError) as exc:  # e.g. a prompt the template cannot render
            for request in requests:
                request.error, request.finish_reason = str(exc), "error"
                request.emit("done", request)
            return
        device = embeds.device
        mask = inputs["attention_mask"].to(device)
        positions = inputs["position_ids"].to(device)
        fitting = self._fitting(requests, mask.sum(dim=1).tolist())
        if not fitting:
            return
        if len(fitting) < len(requests):  # rows over the limits leave before any model work
            index = torch.tensor(fitting, device=device)
            requests = [requests[i] for i in fitting]
            embeds, mask, positions = embeds[index], mask[index], positions[index]
            inputs = {
                key: value[index.to(value.device)] for key, value in inputs.items() if key in ("input_ids", "segments")
            }
        cache = DynamicCache()
        with _quiet():
            logits = self.served.llm(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        for row, (request, count) in enumerate(zip(requests, mask.sum(dim=1).tolist())):
            request.prompt_tokens = int(count)
            if request.repetition_penalty != 1.0:  # the prompt's own tokens (not speech slots, not padding)
                text = (inputs["segments"][row] != SEGMENT_PAD) & (inputs["segments"][row] != SEGMENT_SPEECH)
                request._prompt_ids = frozenset(inputs["input_ids"][row][text].tolist())
        first = [_sample(row, r) for row, r in zip(logits, requests)]
        keep = []
        for index, (request, token) in enumerate(zip(requests, first)):
            self._accept(request, token)
            if request.finish_reason is None:
                keep.append(index)
            else:  # done at its first token (a stop token, or max_tokens 1)
                request.emit("done", request)
        if not keep:
            return
        index = torch.tensor(keep, device=device)
        if len(keep) < len(requests):
            cache.batch_select_indices(index)
        last = torch.tensor(first, device=device)[index]
        self._merge([requests[i] for i in keep], cache, mask[index], positions[index, -1] + 1, last)

    def _fitting(self, requests: Sequence[Request], lengths: Sequence[int]) -> list[int]:
        """Indices of the requests whose prompt fits `max_prompt_tokens` and, with their answer's
        `max_tokens`, the LLM's context; the others end here with a client error (400)."""
        served, keep = self.served, []
        for index, (request, length) in enumerate(zip(requests, lengths)):
            problem = served.prompt_problem(int(length), request.max_tokens)
            if problem is None:
                keep.append(index)
                continue
            request.prompt_tokens = int(length)
            request.error, request.status, request.finish_reason = problem, 400, "error"
            request.emit("done", request)
        return keep

    def _merge(self, rows, cache, mask, positions, last) -> None:
        if not self.rows:
            self.rows, self.cache, self.mask, self.positions, self.last = rows, cache, mask, positions, last
            return
        from transformers import DynamicCache

        width = max(self.mask.shape[1], mask.shape[1])

        def left_pad(tensor: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - tensor.shape[dim]
            if missing == 0:
                return tensor
            shape = list(tensor.shape)
            shape[dim] = missing
            return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)

        layers = [
            (
                torch.cat([left_pad(old.keys, 2), left_pad(new.keys, 2)]),
                torch.cat([left_pad(old.values, 2), left_pad(new.values, 2)]),
            )
            for old, new in zip(self.cache.layers, cache.layers)
        ]
        self.cache = DynamicCache(ddp_cache_data=layers)
        self.mask = torch.cat([left_pad(self.mask, 1), left_pad(mask, 1)])
        self.positions = torch.cat([self.positions, positions])
        self.last = torch.cat([self.last, last])
        self.rows += rows

    @torch.no_grad()
    def step(self) -> None:
        """Feed every row its last token; sample the next; drop the rows that finished."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        with _quiet():
            logits = self.served.llm(
                input_ids=self.last[:, None],
                attention_mask=self.mask,
                position_ids=self.positions[:, None],
                past_key_values=self.cache,
                use_cache=True,
            ).logits[:, -1]
        self.positions = self.positions + 1
        chosen = [_sample(row, r) for row, r in zip(logits, self.rows)]
        self.last = torch.tensor(chosen, device=self.last.device)
        self._after_sampling(chosen)

    def _after_sampling(self, tokens: list[int]) -> None:
        keep = []
        for index, (request, token) in enumerate(zip(self.rows, tokens)):
            if request.finish_reason is None:
                self._accept(request, token)
            if request.finish_reason is None:
                keep.append(index)
            else:
                request.emit("done", request)
        if len(keep) < len(self.rows):
            self._select(keep)

    def _accept(self, request: Request, token: int) -> None:
        if request.cancelled:
            request.finish_reason = "cancelled"
            return
        if token in self.served.stop_ids:
            request.finish_reason = "stop"
            self._flush(request, final=True)
            return
        request.tokens.append(token)
        text = self.served.tokenizer.decode(request.tokens, skip_special_tokens=True)
        for stop in request.stop:
            cut = text.find(stop)
            if cut >= 0:
                request.text, request.finish_reason = text[:cut], "stop"
                self._flush(request, final=True)
                return
        request.text = text
        if len(request.tokens) >= request.max_tokens:
            request.finish_reason = "length"
            self._flush(request, final=True)
        else:
            self._flush(request, final=False)

    @staticmethod
    def _flush(request: Request, final: bool) -> None:
        """Stream what is new; hold back a half multi-byte character and, while a stop string could
        still be completing, the text that might belong to it."""
        text = request.text if final else request.text.rstrip("\ufffd")
        if not final and request.stop:
            hold = max(len(stop) for stop in request.stop) - 1
            text = text[: max(request._emitted, len(text) - hold)]
        if len(text) > request._emitted:
            request.emit("delta", text[request._emitted :])
            request._emitted = len(text)
        if final:
            request.text = request.text.strip()

    def _select(self, keep: list[int]) -> None:
        from transformers import DynamicCache

        if not keep:
            self.rows, self.cache, self.mask, self.positions, self.last = [], None, None, None, None
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.rows = [self.rows[i] for i in keep]
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], self.last[index]
        start = int((self.mask.sum(dim=0) > 0).nonzero()[0])  # columns every remaining row pads
        if start > 0:
            layers = [(layer.keys[:, :, start:], layer.values[:, :, start:]) for layer in self.cache.layers]
            self.cache = DynamicCache(ddp_cache_data=layers)
            self.mask = self.mask[:, start:]


def decode_stream(served: ServedModel, requests: Sequence[Request], max_batch: int = 16) -> Iterator[Request]:
    """Answer every request on this thread with continuous batching, yielding each as it finishes
    (not in order): rows join as others finish, up to `max_batch` at a time. What `eval` and
    augmentation use; the server's `Engine` runs the same `DecodeBatch` on its own thread."""
    pending = list(requests)
    batch = DecodeBatch(served)
    finished: list[Request] = []
    for request in pending:
        request.on_event = _collect_into(finished, request.on_event)
    with served.lock:
        while pending or len(batch):
            room = max_batch - len(batch)
            if pending and room > 0:
                batch.admit(pending[:room])
                pending = pending[room:]
            if len(batch):
                batch.step()
            while finished:
                yield finished.pop(0)
    while finished:
        yield finished.pop(0)


def _collect_into(finished: list[Request], then: Callable[[str, Any], None] | None) -> Callable[[str, Any], None]:
    def on_event(kind: str, payload: Any) -> None:
        if kind == "done":
            finished.append(payload)
        if then is not None:
            then(kind, payload)

    return on_event


def generate_all(served: ServedModel, requests: Sequence[Request], max_batch: int = 16) -> list[Request]:
    """`decode_stream` to the end; the requests in their own order."""
    for _ in decode_stream(served, requests, max_batch):
        pass
    return list(requests)


class QueueFull(SelfPoweredError):
    """More requests are waiting than the server accepts; the client should retry later."""


class Engine:
    """Decodes on one background thread; `submit` from any thread. Requests for several models
    are served in turn, each model's rows batched together."""

    def __init__(self, models: dict[str, ServedModel], max_batch: int = 16, max_queue: int = 256) -> None:
        self.models, self.max_batch, self.max_queue = models, max_batch, max_queue
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.batches = {name: DecodeBatch(served) for name, served in models.items()}
        self.waiting: dict[str, list[Request]] = {name: [] for name in models}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="selfpowered-engine", daemon=True)
        self.steps = 0
        self.last_progress = time.monotonic()  # the last admit or step that finished (liveness)

    def start(self) -> Engine:
        self.thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Stop decoding: every request still waiting or decoding ends as cancelled (its client gets
        what it has), and the thread is joined for at most `timeout` seconds."""
        self._stop.set()
        self.thread.join(timeout=timeout)

    def stuck(self, after_seconds: float) -> bool:
        """Work is waiting or decoding, and nothing finished for `after_seconds`: not live."""
        busy = self.active or self.queue_depth
        return bool(busy) and time.monotonic() - self.last_progress > after_seconds

    @property
    def queue_depth(self) -> int:
        return self.inbox.qsize() + sum(len(w) for w in self.waiting.values())

    @property
    def active(self) -> int:
        return sum(len(batch) for batch in self.batches.values())

    def submit(self, request: Request) -> None:
        if request.model not in self.models:
            raise SelfPoweredError(f"model {request.model!r} is not served")
        if self.queue_depth >= self.max_queue:
            raise QueueFull(f"{self.queue_depth} requests are waiting (the limit is {self.max_queue})")
        self.inbox.put(request)

    def _loop(self) -> None:
        while not self._stop.is_set():
            idle = not self.active and not any(self.waiting.values())
            try:
                first = self.inbox.get(timeout=0.05) if idle else self.inbox.get_nowait()
                self.waiting[first.model].append(first)
                while True:
                    request = self.inbox.get_nowait()
                    self.waiting[request.model].append(request)
            except queue.Empty:
                pass
            for name, batch in self.batches.items():
                try:
                    self._turn(name, batch)
                except Exception:  # a bug must not kill the server: fail the rows, go on
                    logger.exception("engine step failed for %s", name)
                    for request in batch.rows + self.waiting[name]:
                        request.error, request.finish_reason = "internal error (logged on the server)", "error"
                        request.emit("done", request)
                    self.batches[name], self.waiting[name] = DecodeBatch(batch.served), []
        self._drain()

    def _drain(self) -> None:
        """On stop: end every request left, so no client waits on a thread that is gone."""
        left = [
            *(r for batch in self.batches.values() for r in batch.rows),
            *(r for w in self.waiting.values() for r in w),
        ]
        while True:
            try:
                left.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        for request in left:
            if request.finish_reason is None:
                request.finish_reason, request.error = "cancelled", "the server is shutting down"
                request.emit("done", request)

    def _turn(self, name: str, batch: DecodeBatch) -> None:
        waiting = [r for r in self.waiting[name] if not r.cancelled]
        for request in self.waiting[name]:
            if request.cancelled:
                request.finish_reason = "cancelled"
                request.emit("done", request)
        room = self.max_batch - len(batch)
        if waiting and room > 0:
            with batch.served.lock:
                batch.admit(waiting[:room])
            waiting = waiting[room:]
            self.last_progress = time.monotonic()
        self.waiting[name] = waiting
        if len(batch):
            started = time.perf_counter()
            with batch.served.lock:
                batch.step()
            self.steps += 1
            self.last_progress = time.monotonic()
            logger.debug("step %d: %d rows in %.3f s", self.steps, len(batch), time.perf_counter() - started)
