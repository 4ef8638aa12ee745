"""The OpenAI-compatible HTTP API: `/v1/chat/completions` (text, audio parts, streaming),
`/v1/audio/transcriptions`, `/v1/models`, `/health` and Prometheus `/metrics`.

Every failure a client can cause is a 4xx JSON error in OpenAI's shape (`{"error": {"message",
"type", "param", "code"}}`), unknown routes and methods included; anything else is logged and
answered 500 in the same shape with no internal text, and the server stays up. What one request
may cost is bounded before any model work: the body while it streams in (413), JSON nesting, the
audio's length from its header (decoding stops at the limit), the prompt against the context and
`max_prompt_tokens`, `max_tokens` against what the context leaves. The queue is bounded (429 with
Retry-After), a client that goes away - streaming or not - frees its batch slot at the next
decoding step, and `/health` says 503 when the engine makes no progress while work waits.
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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from selfpowered.config import ServeConfig
from selfpowered.model.engine import Request
from selfpowered.serve.engine import Engine, QueueFull
from selfpowered.serve.inputs import RequestError, decode_audio, parse_messages
from selfpowered.serve.limits import BadJSON, BodyLimit, error_body, parse_json
from selfpowered.serve.openapi import CHAT_BODY, TRANSCRIPTION_BODY
from selfpowered.text.tasks import DEFAULT_ASR_INSTRUCTION

logger = logging.getLogger(__name__)
STUCK_AFTER_S = 30.0  # no engine progress for this long while work waits: /health says 503
DISCONNECT_POLL_S = 0.5


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
        trims = Gauge("selfpowered_memory_trims", "times freed memory went back to the OS", registry=self.registry)
        trims.set_function(lambda: engine.trims)


def _error(exc: RequestError, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def create_app(engine: Engine, settings: ServeConfig) -> FastAPI:
    """The FastAPI app around a started `Engine`."""
    app = FastAPI(title="selfpowered", version="1")
    metrics = Metrics(engine)
    _add_guards(app, engine, settings, metrics)
    _add_status_routes(app, engine, metrics)
    _add_chat(app, engine, settings, metrics)
    _add_transcriptions(app, engine, settings, metrics)
    from selfpowered.serve.ui import add_ui

    add_ui(app, engine, settings)
    # outermost: a body over the cap is refused while it streams in, before any route reads it
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_body_mb * 2**20), megabytes=settings.max_body_mb)
    return app


def _add_guards(app: FastAPI, engine: Engine, settings: ServeConfig, metrics: Metrics) -> None:
    """API key, metrics, the last-resort 500, and OpenAI-shaped errors for every route."""

    @app.middleware("http")
    async def guard(request: HTTPRequest, call_next):
        endpoint, started = request.url.path, time.perf_counter()
        if settings.api_key and endpoint.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {settings.api_key}":
                response = _error(RequestError("a valid API key is required (Authorization: Bearer KEY)", None, 401))
                metrics.requests.labels(endpoint, 401).inc()
                return response
        try:
            response = await call_next(request)
        except Exception:  # a bug: log it, answer 500 in the API's shape (nothing internal), stay up
            logger.exception("unhandled error on %s", endpoint)
            response = _error(RequestError("internal error (logged on the server)", None, 500))
        known = endpoint if response.status_code != 404 else "unknown"  # no label per probed path
        metrics.requests.labels(known, response.status_code).inc()
        metrics.latency.labels(known).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(RequestError)
    async def request_error(_: HTTPRequest, exc: RequestError) -> JSONResponse:
        return _error(exc, {"Retry-After": "1"} if exc.status == 429 else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: HTTPRequest, exc: HTTPException) -> JSONResponse:
        message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        text = message.get(exc.status_code, str(exc.detail))
        return JSONResponse(error_body(text, exc.status_code), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: HTTPRequest, exc: RequestValidationError) -> JSONResponse:
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return JSONResponse(error_body(f"invalid request: {first.get('msg', 'bad value')}", 400, where), 400)


def _add_status_routes(app: FastAPI, engine: Engine, metrics: Metrics) -> None:
    created = int(time.time())

    @app.get("/health")
    async def health() -> JSONResponse:
        if not engine.thread.is_alive():
            return JSONResponse({"status": "down", "detail": "the decoding thread is not running"}, 503)
        if engine.stuck(STUCK_AFTER_S):
            detail = (
                f"no decoding progress for over {STUCK_AFTER_S:g} s with {engine.queue_depth + engine.active} requests"
            )
            return JSONResponse({"status": "stuck", "detail": detail}, 503)
        return JSONResponse({"status": "ok", "queue_depth": engine.queue_depth, "active": engine.active})

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


async def _json_body(request: HTTPRequest) -> dict:
    """The body as a JSON object (its size was capped by `BodyLimit` as it came in)."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", "") and not kind.endswith("+json"):
        raise RequestError(f"the body must be JSON (Content-Type: application/json), not {kind}", None, 415)
    try:
        body = parse_json(await request.body())
    except BadJSON as exc:
        raise RequestError(str(exc)) from exc
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    return body


def _model_of(engine: Engine, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise RequestError("model is required", "model")
    if name not in engine.models:
        known = ", ".join(engine.models)
        raise RequestError(f"model {name[:80]!r} does not exist; served: {known}", "model", 404, "model_not_found")
    return name


def _submit(engine: Engine, request: Request) -> asyncio.Queue:
    """Queue `request`; its engine events come back as an asyncio queue on this loop."""
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    request.on_event = lambda kind, payload: loop.call_soon_threadsafe(events.put_nowait, (kind, payload))
    try:
        engine.submit(request)
    except QueueFull as exc:
        raise RequestError(f"the server is busy ({exc}); retry shortly", None, 429, "queue_full") from exc
    return events


def _add_chat(app: FastAPI, engine: Engine, settings: ServeConfig, metrics: Metrics) -> None:
    @app.post("/v1/chat/completions", openapi_extra=CHAT_BODY)
    async def chat_completions(http: HTTPRequest):
        body = await _json_body(http)
        name = _model_of(engine, body.get("model"))
        if body.get("n", 1) not in (1, None):
            raise RequestError("n > 1 is not supported: send one request per answer", "n")
        options = _options(body, settings.max_tokens)
        stream_options = body.get("stream_options")
        if stream_options is not None and not isinstance(stream_options, dict):
            raise RequestError("stream_options must be an object", "stream_options")
        served = engine.models[name]
        _check_text_length(served, body.get("messages"), options["max_tokens"])
        chat = await asyncio.to_thread(parse_messages, body.get("messages"), settings.max_audio_seconds)
        metrics.audio.inc(chat.audio_seconds)
        request = Request(name, chat.instruction, chat.audio, chat.context, **options)
        events = _submit(engine, request)
        ident, stamp = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.get("stream"):
            usage = bool((stream_options or {}).get("include_usage"))
            stream = _stream(request, events, ident, stamp, usage, metrics, http)
            return StreamingResponse(stream, media_type="text/event-stream")
        done = await _finished(request, events, http)
        _count(metrics, done)
        message = {"role": "assistant", "content": done.text}
        choice = {"index": 0, "message": message, "finish_reason": done.finish_reason, "logprobs": None}
        return {"id": ident, "object": "chat.completion", "created": stamp, "model": name, "choices": [choice],
                "usage": _usage(done)}  # fmt: skip


def _add_transcriptions(app: FastAPI, engine: Engine, settings: ServeConfig, metrics: Metrics) -> None:
    @app.post("/v1/audio/transcriptions", openapi_extra=TRANSCRIPTION_BODY)
    async def transcriptions(http: HTTPRequest):
        try:
            form = await http.form(max_files=1, max_fields=8)
        except Exception as exc:  # not multipart, or a broken one
            raise RequestError("expected multipart/form-data with a `file` field", "file", 400) from exc
        upload = form.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise RequestError("a `file` field with the audio is required", "file")
        name = _model_of(engine, form.get("model"))
        response_format = str(form.get("response_format") or "json")
        if response_format not in ("json", "text", "verbose_json"):
            raise RequestError("response_format must be json, text or verbose_json", "response_format")
        data = await upload.read()
        filename = str(upload.filename or "")
        suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else None
        audio = await asyncio.to_thread(decode_audio, data, "file", settings.max_audio_seconds, suffix)
        metrics.audio.inc(audio.size / 16_000)
        served = engine.models[name]
        if served.kind == "cascade":  # Whisper is the transcriber; the LLM has nothing to add
            text = (await asyncio.to_thread(served.hearing.transcribe, [audio]))[0]
        else:
            request = Request(name, DEFAULT_ASR_INSTRUCTION, audio, max_tokens=settings.max_tokens)
            done = await _finished(request, _submit(engine, request), http)
            _count(metrics, done)
            text = done.text
        if response_format == "text":
            return PlainTextResponse(text)
        if response_format == "verbose_json":
            return {"task": "transcribe", "language": "english", "duration": audio.size / 16_000, "text": text}
        return {"text": text}


def _check_text_length(served, messages: Any, max_tokens: int) -> None:
    """Refuse, before any model work, a request whose text alone cannot fit: its characters bound
    its tokens from below (a token is at most ~16 characters of English), so a 200,000-character
    instruction is refused without even being tokenized."""
    if not isinstance(messages, list):
        return
    characters = sum(_text_characters(m.get("content")) for m in messages if isinstance(m, dict))
    room = min(served.context_window - max_tokens, served.max_prompt_tokens or served.context_window)
    if characters // 16 > room:
        raise RequestError(
            f"the messages hold {characters} characters, at least {characters // 16} tokens; this model takes at most "
            f"{room} prompt tokens with max_tokens {max_tokens} (its context is {served.context_window})",
            "messages",
        )


def _text_characters(content: Any) -> int:
    """Characters of a message's text (audio parts are bounded by their length, elsewhere)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def _options(body: dict, cap: int) -> dict:
    """Decoding options from the body, each checked (the param named when wrong)."""

    def number(key: str, default: float, low: float, high: float) -> float:
        value = body.get(key, default)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise RequestError(f"{key} must be a number in [{low}, {high}]", key)
        return float(value)

    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    limit = body.get(key)
    if limit is None:
        limit = cap
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= cap:
        raise RequestError(f"{key} must be an integer from 1 to {cap} (this server's limit)", key)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise RequestError("stop must be a string or a list of up to 4 non-empty strings", "stop")
    if any(len(s) > 64 for s in stop):
        raise RequestError("a stop string may have at most 64 characters", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise RequestError("seed must be an integer in [0, 2**63)", "seed")
    # an extension field, as vLLM accepts its extra sampling params in the body: the loop guard
    ngram = body.get("no_repeat_ngram_size") or 0
    if isinstance(ngram, bool) or not isinstance(ngram, int) or not 0 <= ngram <= 32:
        raise RequestError("no_repeat_ngram_size must be an integer in [0, 32] (0 = off)", "no_repeat_ngram_size")
    return {
        "max_tokens": limit,
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
    """The engine's events for `request` as they come, up to "done". Whether the client is still
    there is asked every half second, tokens flowing or not: a client gone away cancels the
    request (its batch slot is freed at the next step) and ends the events."""
    checked = time.monotonic()
    while True:
        try:
            kind, payload = await asyncio.wait_for(events.get(), timeout=DISCONNECT_POLL_S)
        except TimeoutError:
            kind = payload = None
        if time.monotonic() - checked >= DISCONNECT_POLL_S:
            checked = time.monotonic()
            if await http.is_disconnected():
                request.cancelled = True
                return
        if kind is None:
            continue
        yield kind, payload
        if kind == "done":
            return


async def _finished(request: Request, events: asyncio.Queue, http) -> Request:
    """Wait for the engine to finish `request`."""
    async for kind, payload in _events(request, events, http):
        if kind == "done":
            if payload.error:
                raise RequestError(payload.error, None, payload.status)
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
                yield f"data: {json.dumps(RequestError(payload.error, None, payload.status).body())}\n\n"
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
