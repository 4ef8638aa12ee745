"""Every hostile-but-fair request of issue 35 against a real `selfpowered serve` process: each is
answered in under a second with a 4xx in OpenAI's error shape (or served correctly), nothing
internal leaks, other clients keep being served, and SIGTERM ends the server promptly."""

from __future__ import annotations

import base64
import io
import json
import signal
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.test_serve import _start

MAX_BODY_MB = 2.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.tiny import tiny_lsm

    path = tmp_path_factory.mktemp("adversarial") / "tiny"
    tiny_lsm().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(checkpoint):
    process, base = _start(
        checkpoint, "--max-audio-seconds", "20", "--set", f"max_body_mb={MAX_BODY_MB}", "--set", "max_prompt_tokens=256"
    )
    yield base
    process.terminate()
    process.wait(timeout=30)


def _post(base: str, body, **kwargs) -> httpx.Response:
    started = time.monotonic()
    if isinstance(body, (dict, list)):
        kwargs.setdefault("json", body)
    else:
        kwargs.setdefault("content", body)
    response = httpx.post(f"{base}/v1/chat/completions", timeout=30, **kwargs)
    response.elapsed_s = time.monotonic() - started
    return response


def _assert_client_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text[:400]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert (
        " at 0x" not in error["message"] and "Traceback" not in error["message"] and "BytesIO" not in error["message"]
    )
    if param is not None:
        assert error["param"] == param, error
    return error


def _chat(content, **extra) -> dict:
    return {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": content}], **extra}


def _flac(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(16_000 * seconds), dtype=np.float32), 16_000, format="FLAC")
    return buffer.getvalue()


def test_an_instruction_over_the_context_is_refused_at_once_and_others_are_served(server):
    """200,000 characters (40,001 tokens): refused before any model work, naming both numbers."""
    done = {}

    def other():
        done["reply"] = _post(server, _chat("hello there"))

    thread = threading.Thread(target=other)
    huge = _post(server, _chat("word " * 40_000))
    thread.start()
    thread.join(timeout=30)
    error = _assert_client_error(huge, 400, "messages")
    assert huge.elapsed_s < 1.0 and "200000 characters" in error["message"] and "2048" in error["message"]
    assert done["reply"].status_code == 200
    medium = _post(server, _chat("word " * 400))  # fits the context, not this server's max_prompt_tokens (256)
    error = _assert_client_error(medium, 400)
    assert "at most 256" in error["message"] and medium.elapsed_s < 1.0


@pytest.mark.parametrize(
    "name, part, param",
    [
        ("format as a number", {"type": "input_audio", "input_audio": {"data": "AAAA", "format": 7}},
         "messages[0].content[0].input_audio.format"),
        ("input_audio as a string", {"type": "input_audio", "input_audio": "AAAA"},
         "messages[0].content[0].input_audio"),
        ("audio_url as a string", {"type": "audio_url", "audio_url": "data:audio/wav;base64,AAAA"},
         "messages[0].content[0].audio_url"),
        ("a part that is not an object", "just text", "messages[0].content[0]"),
        ("text that is not a string", {"type": "text", "text": ["a"]}, "messages[0].content[0].text"),
    ],
)  # fmt: skip
def test_malformed_parts_are_400s_naming_the_field(server, name, part, param):
    response = _post(server, _chat([part]))
    _assert_client_error(response, 400, param)
    assert response.elapsed_s < 1.0


def test_malformed_options_and_bodies_are_400s(server):
    _assert_client_error(_post(server, _chat("hi", stream=True, stream_options="yes")), 400, "stream_options")
    deep = ("[" * 10_000 + "]" * 10_000).encode()
    error = _assert_client_error(_post(server, deep, headers={"content-type": "application/json"}), 400)
    assert "nests more than" in error["message"]
    _assert_client_error(_post(server, _chat("hi", max_tokens=0)), 400, "max_tokens")
    error = _assert_client_error(_post(server, _chat("hi", max_tokens=10**9)), 400, "max_tokens")
    assert "from 1 to 256" in error["message"]  # the cap is said, not applied silently
    text = json.dumps(_chat("hi")).encode()
    _assert_client_error(_post(server, text, headers={"content-type": "text/plain"}), 415)


def test_unknown_routes_and_methods_answer_in_the_openai_shape(server):
    for response, status in (
        (httpx.get(f"{server}/v1/nothing"), 404),
        (httpx.get(f"{server}/v1/chat/completions"), 405),
    ):
        assert response.status_code == status
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_bodies_are_capped_while_they_stream_in(server):
    """A chunked body (no Content-Length) over the cap is refused before it is read whole."""
    sent = {"bytes": 0}

    def chunks():
        block = b"x" * 65536
        for _ in range(2000):  # 128 MB offered
            sent["bytes"] += len(block)
            yield block

    started = time.monotonic()
    try:
        response = httpx.post(f"{server}/v1/chat/completions", content=chunks(), timeout=30)
        assert response.status_code == 413
    except httpx.HTTPError:
        pass  # the server may close the connection after its 413, mid-upload
    assert sent["bytes"] < 64 * 2**20 and time.monotonic() - started < 10
    upload = {"file": ("clip.wav", b"RIFF" + b"\0" * int(3 * 2**20), "audio/wav")}
    response = httpx.post(f"{server}/v1/audio/transcriptions", files=upload, data={"model": "tiny"}, timeout=30)
    assert response.status_code == 413
    assert httpx.get(f"{server}/health").status_code == 200


def test_long_audio_is_refused_from_its_header_before_decoding(server):
    """A FLAC of silence says its length in its header: 2 hours are refused without decoding."""
    hours = _flac(7200.0)
    assert len(hours) < MAX_BODY_MB * 2**20 * 0.75  # compressed silence: small enough to arrive
    data = base64.b64encode(hours).decode()
    started = time.monotonic()
    response = _post(server, _chat([{"type": "input_audio", "input_audio": {"data": data, "format": "flac"}}]))
    error = _assert_client_error(response, 400)
    assert "7200.0 s long" in error["message"] and time.monotonic() - started < 1.5


def test_a_client_that_gives_up_frees_its_slot_without_streaming(server):
    """Non-streaming clients that time out are cancelled: the engine is idle soon after."""

    def give_up():
        try:
            httpx.post(f"{server}/v1/chat/completions", json=_chat("tell me a story", max_tokens=256), timeout=0.3)
        except httpx.TimeoutException:
            pass

    threads = [threading.Thread(target=give_up) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        health = httpx.get(f"{server}/health").json()
        if health["active"] == 0 and health["queue_depth"] == 0:
            break
        time.sleep(0.1)
    assert health["active"] == 0 and health["queue_depth"] == 0


def test_sigterm_ends_the_server_within_ten_seconds(checkpoint):
    process, base = _start(checkpoint)
    streams = []

    def stream():
        try:
            with httpx.stream("POST", f"{base}/v1/chat/completions", json=_chat("go on", max_tokens=256, stream=True),
                              timeout=30) as response:  # fmt: skip
                streams.append(sum(1 for _ in response.iter_lines()))
        except httpx.HTTPError:
            streams.append(-1)

    thread = threading.Thread(target=stream)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)
    assert time.monotonic() - started < 10
    thread.join(timeout=10)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/health", timeout=1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
