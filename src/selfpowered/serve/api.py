"""The OpenAI-compatible HTTP API: `/v1/chat/completions` (text, audio parts, streaming),
`/v1/audio/transcriptions`, `/v1/models`, `/health` and Prometheus `/metrics`.

Every failure a client can cause is a 4xx JSON error in OpenAI's shape (`{"error": {"message",
"type", "param", "code"}}`); anything else is logged and answered 500 in the same shape, and the
server stays up. Request bodies are capped (413), the queue is bounded (429 with Retry-After), and
a client that disconnects while streaming frees its batch slot at the next decoding step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from selfpowered.config import ServeConfig
from selfpowered.model.engine import Engine, QueueFull, Request
from selfpowered.serve.inputs import RequestError, decode_audio, parse_messages
from selfpowered.text.tasks import DEFAULT_ASR_INSTRUCTION

logger = logging.getLogger(__name__)


class Metrics:
    """Prometheus counters of one app (its own registry, so tests can run several apps)."""

    def __init__(self, engine: Engine) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("selfpowered_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "selfpowered_request_seconds", "request latency", ["endpoint"], registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
        )  # fmt: skip
        self.tokens = Counter("selfpowered_tokens", "tokens", ["kind"], registry=self.registry)
        self.audio = Counter("selfpowered_audio_seconds", "seconds of audio received", registry=self.registry)
        depth = Gauge("selfpowered_queue_depth", "requests waiting for a batch slot", registry=self.registry)
        depth.set_function(lambda: engine.queue_depth)
        active = Gauge("selfpowered_active_rows", "requests being decoded", registry=self.registry)
        active.set_function(lambda: engine.active)


def create_app(engine: Engine, settings: ServeConfig) -> FastAPI:
    """The FastAPI app around a started `Engine`."""
    app = FastAPI(title="selfpowered", version="1")
    metrics = Metrics(engine)
    created = int(time.time())

    def error(exc: RequestError, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.middleware("http")
    async def guard(request: HTTPRequest, call_next):
        endpoint, started = request.url.path, time.perf_counter()
        if settings.api_key and endpoint.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {settings.api_key}":
                response = error(RequestError("a valid API key is required (Authorization: Bearer KEY)", None, 401))
                metrics.requests.labels(endpoint, 401).inc()
                return response
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_mb * 2**20:
            response = error(RequestError(f"the request body is over {settings.max_body_mb:g} MB", None, 413))
        else:
            try:
                response = await call_next(request)
            except Exception:  # a bug: log it, answer 500 in the API's shape, stay up
                logger.exception("unhandled error on %s", endpoint)
                response = error(RequestError("internal error (logged on the server)", None, 500))
        metrics.requests.labels(endpoint, response.status_code).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(RequestError)
    async def request_error(_: HTTPRequest, exc: RequestError) -> JSONResponse:
        return error(exc, {"Retry-After": "1"} if exc.status == 429 else None)

    @app.get("/health")
    async def health() -> JSONResponse:
        ready = engine.thread.is_alive()
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict:
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "selfpowered"} for name in engine.models
        ]
        return {"object": "list", "data": data}

    async def body_of(request: HTTPRequest) -> dict:
        raw = await request.body()
        if len(raw) > settings.max_body_mb * 2**20:  # chunked bodies carry no length header
            raise RequestError(f"the request body is over {settings.max_body_mb:g} MB", None, 413)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the body is not valid JSON ({exc})") from exc
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object")
        return body

    def model_of(name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise RequestError("model is required", "model")
        if name not in engine.models:
            known = ", ".join(engine.models)
            raise RequestError(f"model {name!r} does not exist; served: {known}", "model", 404, "model_not_found")
        return name

    def submit(request: Request) -> None:
        try:
            engine.submit(request)
        except QueueFull as exc:
            raise RequestError(f"the server is busy ({exc}); retry shortly", None, 429, "queue_full") from exc

    def attach(request: Request) -> asyncio.Queue:
        """Events of `request` (from the engine thread) as an asyncio queue on this loop."""
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        request.on_event = lambda kind, payload: loop.call_soon_threadsafe(events.put_nowait, (kind, payload))
        return events

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HTTPRequest):
        body = await body_of(http)
        name = model_of(body.get("model"))
        if body.get("n", 1) not in (1, None):
            raise RequestError("n > 1 is not supported: send one request per answer", "n")
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or settings.max_tokens
        options = _options(body, limit, settings.max_tokens)
        chat = await asyncio.to_thread(parse_messages, body.get("messages"), settings.max_audio_seconds)
        metrics.audio.inc(chat.audio_seconds)
        request = Request(name, chat.instruction, chat.audio, chat.context, **options)
        events = attach(request)
        submit(request)
        ident, stamp = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            stream = _stream(request, events, ident, stamp, usage, metrics, http)
            return StreamingResponse(stream, media_type="text/event-stream")
        done = await _finished(request, events, http)
        _count(metrics, done)
        message = {"role": "assistant", "content": done.text}
        choice = {"index": 0, "message": message, "finish_reason": done.finish_reason, "logprobs": None}
        return {
            "id": ident,
            "object": "chat.completion",
            "created": stamp,
            "model": name,
            "choices": [choice],
            "usage": _usage(done),
        }

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(http: HTTPRequest):
        try:
            form = await http.form()
        except Exception as exc:  # not multipart, or a broken one
            raise RequestError(f"expected multipart/form-data with a `file` ({exc})", "file") from exc
        upload = form.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise RequestError("a `file` field with the audio is required", "file")
        name = model_of(form.get("model"))
        response_format = str(form.get("response_format") or "json")
        if response_format not in ("json", "text", "verbose_json"):
            raise RequestError("response_format must be json, text or verbose_json", "response_format")
        data = await upload.read()
        suffix = (upload.filename or "").rsplit(".", 1)[-1].lower() if "." in (upload.filename or "") else None
        audio = await asyncio.to_thread(decode_audio, data, "file", settings.max_audio_seconds, suffix)
        metrics.audio.inc(audio.size / 16_000)
        served = engine.models[name]
        if served.kind == "cascade":  # Whisper is the transcriber; the LLM has nothing to add
            text = (await asyncio.to_thread(served.hearing.transcribe, [audio]))[0]
        else:
            request = Request(name, DEFAULT_ASR_INSTRUCTION, audio, max_tokens=settings.max_tokens)
            events = attach(request)
            submit(request)
            done = await _finished(request, events, http)
            _count(metrics, done)
            text = done.text
        if response_format == "text":
            return PlainTextResponse(text)
        if response_format == "verbose_json":
            return {"task": "transcribe", "language": "english", "duration": audio.size / 16_000, "text": text}
        return {"text": text}

    from selfpowered.serve.ui import add_ui

    add_ui(app, engine, settings)
    return app


def _options(body: dict, limit: Any, cap: int) -> dict:
    """Decoding options from the body, each checked (the param named when wrong)."""

    def number(key: str, default: float, low: float, high: float) -> float:
        value = body.get(key, default)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise RequestError(f"{key} must be a number in [{low}, {high}]", key)
        return float(value)

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise RequestError("max_tokens must be a positive integer", "max_tokens")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise RequestError("stop must be a string or a list of up to 4 non-empty strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed must be an integer", "seed")
    # an extension field, as vLLM accepts its extra sampling params in the body: the loop guard
    ngram = body.get("no_repeat_ngram_size") or 0
    if isinstance(ngram, bool) or not isinstance(ngram, int) or not 0 <= ngram <= 32:
        raise RequestError("no_repeat_ngram_size must be an integer in [0, 32] (0 = off)", "no_repeat_ngram_size")
    return {
        "max_tokens": min(limit, cap),
        "temperature": number("temperature", 0.0, 0.0, 2.0),
        "top_p": number("top_p", 1.0, 0.0, 1.0) or 1.0,
        "seed": seed,
        "stop": stop,
        "no_repeat_ngram_size": ngram,
    }


def _usage(done: Request) -> dict:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": len(done.tokens),
        "total_tokens": done.prompt_tokens + len(done.tokens),
    }


def _count(metrics: Metrics, done: Request) -> None:
    metrics.tokens.labels("prompt").inc(done.prompt_tokens)
    metrics.tokens.labels("completion").inc(len(done.tokens))


async def _events(request: Request, events: asyncio.Queue, http) -> AsyncIterator[tuple[str, Any]]:
    """The engine's events for `request` as they come, up to "done"; a client gone away cancels
    the request (its batch slot is freed at the next step) and ends them."""
    while True:
        try:
            kind, payload = await asyncio.wait_for(events.get(), timeout=1.0)
        except TimeoutError:
            if await http.is_disconnected():
                request.cancelled = True
                return
            continue
        yield kind, payload
        if kind == "done":
            return


async def _finished(request: Request, events: asyncio.Queue, http) -> Request:
    """Wait for the engine to finish `request`."""
    async for kind, payload in _events(request, events, http):
        if kind == "done":
            if payload.error:
                raise RequestError(payload.error, None, 500)
            return payload
    raise RequestError("the client went away before the answer was ready", None, 400)


async def _stream(request: Request, events, ident, stamp, usage, metrics, http) -> AsyncIterator[str]:
    """SSE `chat.completion.chunk` events: the role, text deltas as they are decoded, the finish
    reason, then (with include_usage) a usage chunk, then [DONE]."""

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        body = {"id": ident, "object": "chat.completion.chunk", "created": stamp, "model": request.model}
        return f"data: {json.dumps({**body, 'choices': [choice], **extra})}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for kind, payload in _events(request, events, http):
            if kind == "delta":
                yield chunk({"content": payload})
                continue
            if payload.error:
                yield f"data: {json.dumps(RequestError(payload.error, None, 500).body())}\n\n"
                return
            _count(metrics, payload)
            yield chunk({}, payload.finish_reason)
            if usage:
                body = {"id": ident, "object": "chat.completion.chunk", "created": stamp, "model": request.model}
                yield f"data: {json.dumps({**body, 'choices': [], 'usage': _usage(payload)})}\n\n"
            yield "data: [DONE]\n\n"
            return
    finally:  # the client went away (the generator is closed): free the batch slot
        if request.finish_reason is None:
            request.cancelled = True
