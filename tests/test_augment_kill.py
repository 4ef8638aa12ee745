"""A real augmentation run, SIGKILLed at random points three times, resumes to exactly the
samples of an unkilled run: every id once, with the same content."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

from tests.helpers import write_manifest


def _records(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_killed_three_times_resumes_to_the_unkilled_result(tiny_llm, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", 160)
    config = tmp_path / "augment.yaml"
    config.write_text(f"llm: {tiny_llm}\ntasks: demo\nmax_new_tokens: 24\nchunk_size: 4\nmax_batch: 4\n")

    def command(out):
        return [sys.executable, "-m", "selfpowered.cli", "augment", str(manifest), str(out), "--config", str(config)]

    reference = tmp_path / "ref.jsonl"
    subprocess.run(command(reference), check=True, capture_output=True)
    expected = _records(reference) + _records(tmp_path / "ref.rejects.jsonl")
    assert len(expected) == 160

    out = tmp_path / "killed.jsonl"
    rejects = tmp_path / "killed.rejects.jsonl"
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        target = _lines(out) + _lines(rejects) + rng.randint(3, 40)
        process = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while process.poll() is None and _lines(out) + _lines(rejects) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills == 3, "every run should have been killed mid-way"
    assert len(_records(out)) + len(_records(rejects)) < 160  # really unfinished
    subprocess.run(command(out), check=True, capture_output=True)
    got = _records(out) + _records(rejects)
    ids = [record["id"] for record in got]
    assert len(ids) == len(set(ids)), "a sample was written twice"
    by_id = {record["id"]: record for record in got}
    assert by_id == {record["id"]: record for record in expected}
