"""Serving benchmark (issue 34): the LSMs and the cascade they contain, served side by side by one
`selfpowered serve` process, on the same spoken requests (demo test clips with the demo's
instructions), greedy: per system the seconds per answer (p50 / p95) and the time to the first
streamed token, one request at a time and at 8 and 32 in flight.

Whisper's hearing cache is kept to one clip (`hearing_memory_mb` tiny) and every request is another
clip, so each answer pays its own Whisper decode, as a user's first question about a clip does.
`--before DIR` serves a checkpoint of the previous recipe too (e.g. the self-powered checkpoint that
shipped before issue 34, from git: `git archive b6ba3cc checkpoints/demo | tar -x -C /tmp/before`),
so today's and yesterday's LSM are timed in the same run.

    .venv/bin/python bench/serve.py --before /tmp/before/checkpoints/demo/selfpowered --out bench/results/serve.json
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
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


def start(models: list[str], max_batch: int, cascade: bool, *sets: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "selfpowered.cli", "serve", "--port", str(port), "--max-batch", str(max_batch)]
    for model in models:
        command += ["-m", model]
    command += ["--set", f"cascade={str(cascade).lower()}", "--set", "max_queue=4096"]
    for item in sets:
        command += ["--set", item]
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


def bodies(clips: Path, count: int, model: str, max_tokens: int, offset: int = 0) -> list[dict]:
    rows = [json.loads(line) for line in clips.read_text().splitlines() if line.strip()][offset : offset + count]
    out = []
    for index, row in enumerate(rows):
        audio = (clips.parent / row["audio"]).read_bytes()
        part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(audio).decode(), "format": "flac"}}
        text = {"type": "text", "text": INSTRUCTIONS[index % len(INSTRUCTIONS)]}
        out.append({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": [text, part]}]})
    return out


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(share * len(ordered))) - 1))]


def drive(base: str, requests: list[dict], concurrency: int) -> dict:
    """Send every request with `concurrency` in flight; latency per request and overall rate."""

    def one(body: dict) -> tuple[float, int, int]:
        started = time.perf_counter()
        reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600)
        tokens = reply.json().get("usage", {}).get("completion_tokens", 0) if reply.status_code == 200 else 0
        return time.perf_counter() - started, tokens, reply.status_code

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, requests))
    wall = time.perf_counter() - started
    latencies = [latency for latency, _, _ in results]
    return {
        "requests": len(requests),
        "concurrency": concurrency,
        "errors": sum(status != 200 for _, _, status in results),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(requests) / wall, 3),
        "tokens_per_s": round(sum(tokens for _, tokens, _ in results) / wall, 1),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(percentile(latencies, 0.95), 3),
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
    parser.add_argument("--checkpoints", default="checkpoints/demo")
    parser.add_argument("--requests", type=int, default=48, help="requests per system and concurrency")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--before", default=None, help="a checkpoint of the previous recipe, served as `before`")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    systems = ("vanilla", "selfpowered", "cascade") + (("before",) if args.before else ())
    models = [f"{arm}={args.checkpoints}/{arm}" for arm in systems[:2]]
    if args.before:
        models.append(f"before={args.before}")
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores",
        "checkpoints": args.checkpoints,
        "requests_per_run": args.requests,
        "max_tokens": args.max_tokens,
        "latency": {},
        "time_to_first_token_s": {},
    }
    process, base = start(models, 32, True, "hearing_memory_mb=0.01")
    try:
        drive(base, bodies(args.clips, 4, "selfpowered", args.max_tokens, offset=700), 2)  # warm-up
        offset = 0
        for concurrency in (1, 8, 32):
            count = args.requests if concurrency > 1 else max(16, args.requests // 3)
            report["latency"][concurrency] = {}
            for system in systems:  # the same clips and instructions for every system
                load = bodies(args.clips, count, system, args.max_tokens, offset)
                report["latency"][concurrency][system] = drive(base, load, concurrency)
                print(system, concurrency, report["latency"][concurrency][system], flush=True)
            offset += count
        for system in systems:
            load = bodies(args.clips, 8, system, args.max_tokens, offset)
            report["time_to_first_token_s"][system] = round(statistics.median(first_token(base, b) for b in load), 3)
    finally:
        process.terminate()
        process.wait(timeout=60)
    report["lsm_p50_over_cascade_p50"] = {
        str(c): round(runs["selfpowered"]["latency_p50_s"] / runs["cascade"]["latency_p50_s"], 3)
        for c, runs in report["latency"].items()
    }
    if args.before:
        report["lsm_p50_over_before_p50"] = {
            str(c): round(runs["selfpowered"]["latency_p50_s"] / runs["before"]["latency_p50_s"], 3)
            for c, runs in report["latency"].items()
        }
    emit(report, args.out)


if __name__ == "__main__":
    main()
