"""`selfpowered serve`: a real uvicorn process on 127.0.0.1 answering the official `openai` client.

A tiny random LSM keeps it fast; what is pinned is the API (shapes, streaming, usage, errors), the
batching (concurrent answers equal one-by-one answers) and that the server stays up through bad input.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.helpers import tone
from tests.tiny import tiny_lsm

openai = pytest.importorskip("openai")
KEY = "test-key"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wav(seconds: float, freq: float = 220.0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, freq), 16_000, format="WAV")
    return buffer.getvalue()


def _audio_part(seconds: float = 1.5, freq: float = 220.0) -> dict:
    data = base64.b64encode(_wav(seconds, freq)).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def _start(checkpoint, *extra: str):
    port = _free_port()
    command = [sys.executable, "-m", "selfpowered.cli", "serve", "-m", f"tiny={checkpoint}", "--port", str(port)]
    process = subprocess.Popen([*command, "--set", "cascade=false", *extra], stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server died: {process.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not become healthy")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "tiny"
    tiny_lsm().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(checkpoint):
    process, base = _start(checkpoint, "--api-key", KEY, "--max-audio-seconds", "20", "--max-batch", "8")
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def _post(server: str, body, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{server}/v1/chat/completions", content=content, headers=headers, timeout=60, **kwargs)


def test_models_text_audio_and_system_prompt(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    text = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=4)
    assert text.object == "chat.completion" and text.usage.completion_tokens <= 4
    audio = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Transcribe the speech"}, _audio_part()]}],
        max_tokens=6,
    )
    speech_tokens = 5  # 1.5 s at 3 tokens per second
    assert audio.usage.prompt_tokens >= text.usage.prompt_tokens + speech_tokens  # the speech is counted
    system = client.chat.completions.create(
        model="tiny",
        messages=[
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "earlier question"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": [_audio_part(), {"type": "text", "text": "What was said?"}]},
        ],
        max_tokens=6,
    )
    assert system.usage.prompt_tokens > audio.usage.prompt_tokens  # system turn and history are in the prompt
    assert system.choices[0].finish_reason in ("stop", "length")


def test_the_loop_guard_is_a_request_option(server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 24}
    plain = _post(server, body).json()["choices"][0]["message"]["content"]
    guarded = _post(server, {**body, "no_repeat_ngram_size": 1}).json()["choices"][0]["message"]["content"]
    assert guarded != plain  # a 1-gram guard: no token twice, which the tiny random model's answer has


def test_audio_url_parts_and_several_audio_parts(client):
    data = base64.b64encode(_wav(1.0)).decode()
    url = {"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{data}"}}
    one = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [url]}], max_tokens=3)
    two = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": [url, _audio_part(1.0, 330)]}], max_tokens=3
    )
    assert two.usage.prompt_tokens > one.usage.prompt_tokens  # both clips are heard, in order


def test_streaming_with_usage_equals_the_plain_answer(client):
    messages = [{"role": "user", "content": [{"type": "text", "text": "Summarise"}, _audio_part(2.0, 300)]}]
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12)
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=12, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens and not chunks[-1].choices


def test_transcriptions_in_every_format(client, server):
    wav = _wav(2.0)
    result = client.audio.transcriptions.create(model="tiny", file=("clip.wav", wav))
    assert isinstance(result.text, str)
    headers = {"Authorization": f"Bearer {KEY}"}
    for response_format in ("text", "verbose_json"):
        reply = httpx.post(
            f"{server}/v1/audio/transcriptions",
            files={"file": ("clip.wav", wav)},
            data={"model": "tiny", "response_format": response_format},
            headers=headers,
            timeout=60,
        )
        assert reply.status_code == 200
        if response_format == "text":
            assert reply.text == result.text
        else:
            assert reply.json()["text"] == result.text and reply.json()["duration"] == pytest.approx(2.0, abs=0.01)


def _audio(data: str, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def _user(*parts, **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": list(parts)}], **extra}


def _bad_inputs() -> list[tuple[str, object, int, str]]:
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    silent = io.BytesIO()
    sf.write(silent, np.zeros(0, dtype=np.float32), 16_000, format="WAV")
    history = [{"role": "user", "content": [_audio(b64(_wav(1.0)))]}, {"role": "user", "content": "x"}]
    hello = [{"role": "user", "content": "hi"}]
    return [
        ("bad base64", _user(_audio("@@not base64@@")), 400, "not valid base64"),
        ("not audio", _user(_audio(b64(b"hello world"))), 400, "does not decode as wav (no audio container"),
        ("truncated audio", _user(_audio(b64(_wav(1.0)[:60]))), 400, "audio"),
        ("unsupported format", _user(_audio(b64(_wav(1.0)), "aiff")), 400, "unsupported audio format"),
        ("empty audio", _user(_audio("")), 400, "empty"),
        ("zero-length audio", _user(_audio(b64(silent.getvalue()))), 400, "no samples"),
        ("too long", _user(_audio(b64(_wav(25.0)))), 400, "at most 20 s"),
        ("malformed JSON", '{"model": "tiny", "messages": [', 400, "not valid JSON"),
        ("unknown model", {"model": "nope", "messages": hello}, 404, "does not exist"),
        ("n > 1", {"model": "tiny", "n": 2, "messages": hello}, 400, "n > 1"),
        ("no messages", {"model": "tiny", "messages": []}, 400, "messages"),
        ("bad temperature", {"model": "tiny", "temperature": 9, "messages": hello}, 400, "temperature"),
        ("bad loop guard", {"model": "tiny", "no_repeat_ngram_size": -1, "messages": hello}, 400, "no_repeat_ngram"),
        ("audio in history", {"model": "tiny", "messages": history}, 400, "last user message"),
    ]


@pytest.mark.parametrize("name, body, status, message", _bad_inputs(), ids=[case[0] for case in _bad_inputs()])
def test_bad_input_is_a_clear_4xx_json_error(server, name, body, status, message):
    reply = _post(server, body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_api_key_is_required(server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    assert _post(server, body, key=None).status_code == 401 and _post(server, body, key="wrong").status_code == 401
    assert httpx.get(f"{server}/health").status_code == 200  # health and metrics need no key


def test_fifty_concurrent_requests_equal_one_by_one_and_the_server_stays_healthy(client, server):
    def ask(i: int) -> str:
        content = [{"type": "text", "text": f"question {i % 5}"}, _audio_part(0.8 + 0.2 * (i % 7), 200 + 15 * i)]
        messages = [{"role": "user", "content": content}]
        reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10)
        return reply.choices[0].message.content

    alone = [ask(i) for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        together = list(pool.map(ask, range(50)))
    assert together[:10] == alone  # greedy: batching never changes an answer
    assert len(together) == 50 and all(isinstance(answer, str) for answer in together)
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    metrics = httpx.get(f"{server}/metrics").text
    assert 'selfpowered_requests_total{endpoint="/v1/chat/completions",status="200"}' in metrics
    assert "selfpowered_queue_depth 0.0" in metrics and "selfpowered_tokens_total" in metrics
    # once idle, the engine hands the memory the batch freed back to the OS (RSS is not a high-water mark)
    deadline = time.monotonic() + 10
    while "selfpowered_memory_trims 0.0" in httpx.get(f"{server}/metrics").text:
        assert time.monotonic() < deadline, "the engine went idle and never released freed memory"
        time.sleep(0.2)


def test_freed_memory_can_be_handed_back_on_this_c_library():
    from selfpowered.serve.engine import limit_malloc_arenas, release_freed_memory

    assert release_freed_memory()  # glibc (Debian, the CI image); musl or macOS would say False
    assert limit_malloc_arenas()


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    body = {"model": "tiny", "stream": True, "max_tokens": 2000, "messages": [{"role": "user", "content": "go on"}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
        next(response.iter_lines())  # the stream has started
    deadline = time.monotonic() + 30
    while "selfpowered_active_rows 0.0" not in httpx.get(f"{server}/metrics").text:
        assert time.monotonic() < deadline, "the abandoned request is still decoding"
        time.sleep(0.2)


def test_full_queue_and_oversized_bodies_are_refused_politely(checkpoint):
    process, base = _start(checkpoint, "--max-batch", "1", "--set", "max_queue=1", "--set", "max_body_mb=0.01")
    try:
        body = {"model": "tiny", "max_tokens": 250, "messages": [{"role": "user", "content": "a long answer"}]}
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            replies = list(pool.map(lambda _: _post(base, body, key=None), range(12)))
        busy = [r for r in replies if r.status_code == 429]
        assert busy and all(r.headers.get("retry-after") == "1" for r in busy)
        assert any(r.status_code == 200 for r in replies)
        big = _post(base, {"model": "tiny", "messages": [{"role": "user", "content": "x" * 20_000}]}, key=None)
        assert big.status_code == 413 and "over 0.01 MB" in big.json()["error"]["message"]
        assert httpx.get(f"{base}/health").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
