"""What bounds the work and memory one request can cause, checked before any model work.

- `BodyLimit`: an ASGI middleware that counts a request body's bytes as they stream in, chunked
  or not, and answers 413 the moment they pass the cap (a 1 GB upload costs a few kB, not 1 GB);
- `parse_json`: a body as JSON, refused (400, never a RecursionError) past `MAX_JSON_DEPTH`
  levels of nesting, which is scanned before the parser recurses;
- `public_message`: what of an exception's text may reach a client - never an object's repr or a
  memory address, never a traceback.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 64  # an OpenAI request nests about 6 deep


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 as soon as it is known
    (from Content-Length, or while the body streams in) and is never read whole."""

    def __init__(self, app, max_bytes: int, megabytes: float | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.megabytes = megabytes if megabytes is not None else max_bytes / 2**20  # as the setting says it

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False
        started = False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # the app sees the client leave; we answer 413 for it
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if refused:  # whatever the app makes of the cut body, the client gets the 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not refused:
                raise
        if refused and not started:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps(error_body(f"the request body is over {self.megabytes:g} MB", 413)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def json_depth(raw: bytes | str) -> int:
    """The deepest nesting of objects and arrays in a JSON text (strings skipped), in one pass."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class BadJSON(ValueError):
    """A body that is not a JSON object this API can take; the message says why."""


def parse_json(raw: bytes) -> Any:
    """`raw` as JSON, or BadJSON: not UTF-8, not JSON, or nested deeper than `MAX_JSON_DEPTH`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJSON(f"the body is not UTF-8 text (byte {exc.start})") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise BadJSON(f"the body nests more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadJSON(f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>|\b0x[0-9a-fA-F]{6,}\b")


def public_message(text: str, limit: int = 300) -> str:
    """An exception's text as a client may see it: object reprs and addresses removed, one line."""
    cleaned = _REPR.sub("<data>", " ".join(str(text).split()))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
