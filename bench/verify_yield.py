"""Issue 16: how many IFEval-constrained self-powered samples the LLM yields per task, with its
greedy answer alone and with rejection sampling (`verify_attempts`), from one augment run.

One run answers both: attempt 1 is the greedy answer a `verify_attempts=1` run would have kept,
so "greedy" counts the samples kept at attempt 1 and "within N" every sample kept.

    python bench/verify_yield.py demo-output/aug/verify-yield-400.jsonl --out bench/results/verify_yield
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

from selfpowered.jsonl import companion_path, iter_jsonl, rejects_path


def tally(samples: Path) -> dict[str, dict[str, int]]:
    """Per task: sample rows asked, kept at attempt 1 (greedy), kept at any attempt, and which."""
    kept_at: dict[str, Counter] = {}
    asked: Counter = Counter()
    for _, record, error in iter_jsonl(samples):
        if error:
            continue
        task = record["task"]
        asked[task] += 1
        kept_at.setdefault(task, Counter())[int(record["source"].get("attempt", 1))] += 1
    for _, record, error in iter_jsonl(rejects_path(samples)):
        if not error and record.get("task"):
            asked[record["task"]] += 1
    table = {}
    for task in sorted(asked):
        attempts = kept_at.get(task, Counter())
        table[task] = {
            "rows": asked[task],
            "kept_greedy": attempts[1],
            "kept_any": sum(attempts.values()),
            "kept_per_attempt": dict(sorted(attempts.items())),
        }
    return table


def _line(name: str, rows: int, greedy: int, kept: int) -> str:
    gain = f"{kept / greedy:.1f}x" if greedy else "-"
    return f"| {name} | {rows} | {greedy} ({greedy / rows:.0%}) | {kept} ({kept / rows:.0%}) | {gain} |"


def markdown(table: dict[str, dict[str, int]], attempts: int) -> str:
    lines = [
        f"| task | rows | kept, greedy only | kept within {attempts} attempts | gain |",
        "|---|---|---|---|---|",
    ]
    total = Counter()
    for task, row in table.items():
        if task == "asr":
            continue
        total.update({k: row[k] for k in ("rows", "kept_greedy", "kept_any")})
        lines.append(_line(task, row["rows"], row["kept_greedy"], row["kept_any"]))
    if total["rows"]:
        lines.append(_line("**all**", total["rows"], total["kept_greedy"], total["kept_any"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("samples", type=Path, help="the augment output (its rejects and stats beside it)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    stats = json.loads(companion_path(args.samples, "stats.json").read_text())
    card = json.loads(companion_path(args.samples, "card.json").read_text())
    table = tally(args.samples)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"per_task": table, "verify_attempts": card["verify_attempts"], "temperature": card["verify_temperature"]}
    (args.out / "yield.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "yield.md").write_text(markdown(table, card["verify_attempts"]))
    shutil.copy(companion_path(args.samples, "stats.json"), args.out / "augment.stats.json")
    print((args.out / "yield.md").read_text())
    run = stats["this_run"]
    print(f"{run['llm_calls']} LLM calls, {run['generated_tokens']} tokens, {run['wall_seconds']} s")


if __name__ == "__main__":
    main()
