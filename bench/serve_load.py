"""Load and abuse benchmark (issue 35): one `selfpowered serve` process on the shipped checkpoints,
driven on 127.0.0.1 only, bounded in count and time.

- p50 / p95 latency, errors and the server's RSS at 1, 8, 32 and 64 requests in flight (mixed:
  spoken requests to every model, text-only ones, transcriptions, and a share of bad requests);
- RSS after warm-up and after `--mixed` (default 1,000) mixed requests: growth in percent, read the
  moment the last answer came back and again once the server has been idle for 2 s;
- other requests' p95 while a 40,000-token instruction is being sent again and again, against the
  same requests on the idle server;
- how long SIGTERM takes to end the server with requests in flight.

    .venv/bin/python bench/serve_load.py --out bench/results/serve_load.json
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import platform
import random
import signal
import threading
import time
from pathlib import Path

import httpx
from report import emit
from serve import ROOT, percentile, start

INSTRUCTIONS = ("Give a short title for this text", "Is the speaker a man or a woman?", "Transcribe the speech",
                "Translate this sentence into French")  # fmt: skip


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def mixed_requests(clips: Path, count: int, seed: int = 0) -> list[tuple[str, dict]]:
    """(route, body) pairs: speech to each model, text only, transcriptions, bad requests (~10%)."""
    rows = [json.loads(line) for line in clips.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    out = []
    for index in range(count):
        row = rows[index % len(rows)]
        audio = base64.b64encode((clips.parent / row["audio"]).read_bytes()).decode()
        part = {"type": "input_audio", "input_audio": {"data": audio, "format": "flac"}}
        kind = rng.random()
        model = rng.choice(("vanilla", "selfpowered", "cascade"))
        text = {"type": "text", "text": rng.choice(INSTRUCTIONS)}
        if kind < 0.1:  # a client mistake: answered 4xx, must not cost memory
            bad = rng.choice([{"model": model}, {"model": model, "messages": [{"role": "user", "content": [part, 7]}]},
                              {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}])  # fmt: skip
            out.append(("chat", bad))
        elif kind < 0.2:
            out.append(
                ("chat", {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "Hello!"}]})
            )
        elif kind < 0.25:
            out.append(("transcribe", {"model": model, "file": (clips.parent / row["audio"]).read_bytes()}))
        else:
            out.append(
                ("chat", {"model": model, "max_tokens": 48, "messages": [{"role": "user", "content": [text, part]}]})
            )
    return out


def send(base: str, route: str, body: dict) -> tuple[float, int]:
    started = time.perf_counter()
    try:
        if route == "transcribe":
            files = {"file": ("clip.flac", body["file"], "audio/flac")}
            reply = httpx.post(
                f"{base}/v1/audio/transcriptions", files=files, data={"model": body["model"]}, timeout=300
            )
        else:
            reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
        status = reply.status_code
    except httpx.HTTPError:
        status = 599  # no answer at all
    return time.perf_counter() - started, status


def drive(base: str, requests: list[tuple[str, dict]], concurrency: int, pid: int) -> dict:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda item: send(base, *item), requests))
    latencies = [latency for latency, status in results if status < 400]
    return {
        "requests": len(results),
        "concurrency": concurrency,
        "seconds": round(time.perf_counter() - started, 1),
        "server_errors": sum(status >= 500 for _, status in results),
        "client_errors": sum(400 <= status < 500 for _, status in results),
        "latency_p50_s": round(percentile(latencies, 0.5), 3) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
        "rss_mb": rss_mb(pid),  # the moment the last answer came back
        "rss_settled_mb": _settled(pid),  # once the server has been idle for SETTLE_S
    }


SETTLE_S = 2.0


def _settled(pid: int) -> float:
    time.sleep(SETTLE_S)
    return rss_mb(pid)


def under_a_huge_request(base: str, probes: list[tuple[str, dict]]) -> dict:
    """Other requests' latency while 40,000-token instructions keep arriving, vs idle."""
    idle = drive(base, probes, 4, os.getpid())["latency_p95_s"]
    stop = threading.Event()
    huge = {"model": "selfpowered", "messages": [{"role": "user", "content": "word " * 40_000}]}
    refused = []

    def hammer():
        while not stop.is_set():
            refused.append(send(base, "chat", huge)[1])

    thread = threading.Thread(target=hammer)
    thread.start()
    busy = drive(base, probes, 4, os.getpid())["latency_p95_s"]
    stop.set()
    thread.join()
    return {"idle_p95_s": idle, "with_huge_requests_p95_s": busy, "ratio": round(busy / idle, 3),
            "huge_requests_sent": len(refused), "huge_statuses": sorted(set(refused))}  # fmt: skip


def sigterm_seconds(models: list[str], clips: Path) -> float:
    process, base = start(models, 16, True)
    load = mixed_requests(clips, 16, seed=3)
    threads = [threading.Thread(target=send, args=(base, *item)) for item in load]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    seconds = time.perf_counter() - started
    for thread in threads:
        thread.join(timeout=60)
    return round(seconds, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=ROOT / "demo-output/corpus/test.jsonl")
    parser.add_argument("--checkpoints", default="checkpoints/demo")
    parser.add_argument("--mixed", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    models = [f"{arm}={args.checkpoints}/{arm}" for arm in ("vanilla", "selfpowered")]
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores",
        "levels": {},
    }
    process, base = start(models, 16, True)
    try:
        pid = process.pid
        drive(base, mixed_requests(args.clips, 16, seed=9), 4, pid)  # warm-up
        report["rss_after_warmup_mb"] = rss_mb(pid)
        report["rss_after_warmup_settled_mb"] = _settled(pid)
        for concurrency in (1, 8, 32, 64):
            count = 24 if concurrency == 1 else 3 * concurrency
            report["levels"][concurrency] = drive(
                base, mixed_requests(args.clips, count, seed=concurrency), concurrency, pid
            )
            print(concurrency, report["levels"][concurrency], flush=True)
        soak = drive(base, mixed_requests(args.clips, args.mixed, seed=1), 16, pid)
        report["soak"] = soak
        report["rss_growth_percent"] = round(100 * (soak["rss_mb"] / report["rss_after_warmup_mb"] - 1), 1)
        settled = soak["rss_settled_mb"] / report["rss_after_warmup_settled_mb"] - 1
        report["rss_settled_growth_percent"] = round(100 * settled, 1)
        probes = [item for item in mixed_requests(args.clips, 40, seed=5) if item[0] == "chat"][:24]
        report["huge_request"] = under_a_huge_request(base, probes)
    finally:
        process.terminate()
        process.wait(timeout=60)
    report["sigterm_seconds"] = sigterm_seconds(models, args.clips)
    emit(report, args.out)


if __name__ == "__main__":
    main()
