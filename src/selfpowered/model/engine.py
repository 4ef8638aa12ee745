"""The decoding engine behind `serve`, `eval` and augmentation: continuous batching over a KV cache.

A `DecodeBatch` holds the rows being decoded for one model. New requests join at any step
(continuous batching): their prompts - chat template, speech embeddings in their slots - are
prefilled as one left-padded batch, and their KV cache is merged into the running one by padding
the shorter on the left, which the attention mask hides. Each step feeds every row's last token
once; a row that finished (stop token, stop string, length, cancelled) leaves the batch at once, so
a long answer never holds short ones back. Left padding, masks and explicit positions make a
row's greedy answer the same alone or in any batch (tests pin it).

The LoRA adapter is merged into the LLM's weights at load: one matrix product per projection, as
a plain LLM costs (`model/served.py`). `decode_stream` runs a `DecodeBatch` to the end on the
calling thread (eval, augmentation); the server's `serve/engine.Engine` runs one per model on a
background thread and hands tokens to the request handlers as they come (streaming).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from selfpowered.errors import SelfPoweredError
from selfpowered.model.prefill import prefill, quiet_cache_warnings
from selfpowered.model.prompting import SEGMENT_PAD, SEGMENT_SPEECH, Conversation
from selfpowered.text.decoding import repeated_ngram_bans

if TYPE_CHECKING:  # annotations only: ServedModel's module needs nothing of this one at run time
    from selfpowered.model.served import ServedModel

logger = logging.getLogger(__name__)
_ids = itertools.count()


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
        logits, cache, mask, positions = prefill(self.served.llm, embeds, mask, positions)
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
        with quiet_cache_warnings():
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
        used = self.mask.sum(dim=0) > 0  # columns some remaining row attends to (the rest: padding of all)
        if not bool(used.all()):
            columns = used.nonzero()[:, 0]
            layers = [(layer.keys[:, :, columns], layer.values[:, :, columns]) for layer in self.cache.layers]
            self.cache = DynamicCache(ddp_cache_data=layers)
            self.mask = self.mask[:, columns]


def decode_stream(served: ServedModel, requests: Sequence[Request], max_batch: int = 16) -> Iterator[Request]:
    """Answer every request on this thread with continuous batching, yielding each as it finishes
    (not in order): rows join as others finish, up to `max_batch` at a time. What `eval` and
    augmentation use; the server's `Engine` runs the same `DecodeBatch` on its own thread.

    New rows join in groups, once a quarter of the batch is free (or it is empty): each join
    rewrites the running KV cache, which with 128 rows of 200 tokens is a gigabyte of copying, so
    one row at a time made a throughput run 20x slower (measured)."""
    pending = list(requests)
    batch = DecodeBatch(served)
    finished: list[Request] = []
    for request in pending:
        request.on_event = _collect_into(finished, request.on_event)
    group = max(1, max_batch // 4)
    with served.lock:
        while pending or len(batch):
            room = max_batch - len(batch)
            if pending and room >= min(group, len(pending)) or (pending and not len(batch)):
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
