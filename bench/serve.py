"""Serving benchmark: throughput with batching vs one request at a time, latency of the LSM vs the
cascade served the same way, and time to first token when streaming. One run, side by side.

Each configuration is a real `selfpowered serve` process on 127.0.0.1 driven by concurrent HTTP
clients sending the same spoken requests (demo test clips with the demo's instructions), greedy.

    .venv/bin/python bench/serve.py --clips demo-output/corpus/test.jsonl --out bench/results/serve.json
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from report import emit

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTIONS = ("Give a short title for this text", "What is the sentiment of this text?", "Transcribe the speech")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(models: list[str], max_batch: int, cascade: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "selfpowered.cli", "serve", "--port", str(port), "--max-batch", str(max_batch)]
    for model in models:
        command += ["-m", model]
    command += ["--set", f"cascade={str(cascade).lower()}", "--set", "max_queue=4096"]
    # the server's log goes to a file: an unread pipe fills up and stalls the server mid-benchmark
    log = tempfile.TemporaryFile("w+")  # removed when closed
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(log.read()[-2000:])
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def bodies(clips: Path, count: int, model: str, max_tokens: int) -> list[dict]:
    rows = [json.loads(line) for line in clips.read_text().splitlines() if line.strip()][:count]
    out = []
    for index, row in enumerate(rows):
        audio = (clips.parent / row["audio"]).read_bytes()
        part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(audio).decode(), "format": "flac"}}
        text = {"type": "text", "text": INSTRUCTIONS[index % len(INSTRUCTIONS)]}
        out.append({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": [text, part]}]})
    return out


def drive(base: str, requests: list[dict], concurrency: int) -> dict:
    """Send every request with `concurrency` in flight; latency per request and overall rate."""

    def one(body: dict) -> tuple[float, int]:
        started = time.perf_counter()
        reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600)
        reply.raise_for_status()
        return time.perf_counter() - started, reply.json()["usage"]["completion_tokens"]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, requests))
    wall = time.perf_counter() - started
    latencies = sorted(latency for latency, _ in results)
    return {
        "requests": len(requests),
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(requests) / wall, 3),
        "tokens_per_s": round(sum(tokens for _, tokens in results) / wall, 1),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(latencies[max(0, int(0.95 * len(latencies)) - 1)], 3),
    }


def first_token(base: str, body: dict) -> float:
    started = time.perf_counter()
    with httpx.stream("POST", f"{base}/v1/chat/completions", json={**body, "stream": True}, timeout=600) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                return time.perf_counter() - started
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=ROOT / "demo-output/corpus/test.jsonl")
    parser.add_argument("--model", default="selfpowered=checkpoints/demo/selfpowered")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    name = args.model.split("=")[0]
    load = bodies(args.clips, args.requests, name, args.max_tokens)
    report: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPU cores",
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "throughput": {},
    }
    for mode, max_batch in (("one at a time", 1), ("batched", 32)):
        process, base = start([args.model], max_batch, cascade=False)
        try:
            drive(base, load[:4], 4)  # warm-up
            report["throughput"][mode] = {c: drive(base, load, c) for c in (1, 8, 32)}
        finally:
            process.terminate()
            process.wait(timeout=60)
    for concurrency in (1, 8, 32):
        ratio = (
            report["throughput"]["batched"][concurrency]["requests_per_s"]
            / report["throughput"]["one at a time"][concurrency]["requests_per_s"]
        )
        report.setdefault("batched_over_one_at_a_time", {})[concurrency] = round(ratio, 2)
    process, base = start([args.model], 32, cascade=True)
    try:
        drive(base, load[:4], 4)
        cascade_load = [{**body, "model": "cascade"} for body in load]
        # one request at a time (what a single user waits) and under load (8 in flight)
        report["latency_concurrency_1"] = {
            name: drive(base, load[:16], 1),
            "cascade": drive(base, cascade_load[:16], 1),
        }
        report["latency_concurrency_8"] = {name: drive(base, load, 8), "cascade": drive(base, cascade_load, 8)}
        report["time_to_first_token_s"] = {
            name: round(statistics.median(first_token(base, body) for body in load[:8]), 3),
            "cascade": round(statistics.median(first_token(base, body) for body in cascade_load[:8]), 3),
        }
    finally:
        process.terminate()
        process.wait(timeout=60)
    emit(report, args.out)


if __name__ == "__main__":
    main()
