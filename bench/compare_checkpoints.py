"""Two pairs of checkpoints, judged by the same demo targets: e.g. the shipped pair against what
`selfpowered demo --retrain` made (issue 34, deliverable 5).

    .venv/bin/python bench/compare_checkpoints.py shipped=bench/results/demo/report.json \
        retrained=/tmp/rt/demo-output/eval/report.json > comparison.md

Prints markdown: every demo target with both pairs' numbers and results (`selfpowered.demo.demo_verdict`,
the verdict's one definition), then each LSM's headline scores with their 95% intervals where the
report has them. Nothing is recomputed: both reports must come from the same eval config.
"""

from __future__ import annotations

import json
import sys

from selfpowered.demo import demo_verdict

LSMS = ("vanilla", "selfpowered")
# (suite, score): the headline numbers, each printed with its interval where the report has one
HEADLINES = [
    ("instruct", "echo_rate"),
    ("instruct", "consistency_chrf"),
    ("instruct", "task_check"),
    ("instruct@ood", "self_echo_rate"),
    ("content", "echo_rate"),
    ("content", "consistency_chrf"),
    ("content", "task_check"),
    ("content", "loop_rate"),
    ("conflict", "follows_text"),
    ("asr", "wer"),
    ("asr@ood", "wer"),
    ("asr@real", "wer"),
]


def _mark(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "**MISSED**")


def _score(row: dict, suite: str, key: str) -> str:
    scores = row.get(suite) or {}
    value = scores.get(key)
    if value is None:
        return "-"
    interval = (scores.get("intervals") or {}).get(f"{key}_95ci")
    if not interval or None in interval:
        return f"{value}"
    return f"{value} ({interval[0]:.3g}-{interval[1]:.3g})"


def _paraling_rows(reports: dict[str, dict], way: str) -> list[str]:
    """Accuracy per set and attribute, with intervals: `way` paraling (the answer parsed) or
    paraling-choice (the likeliest option, the verdict's score)."""
    lines = []
    first = next(iter(reports.values()))["systems"]["selfpowered"]
    for data, attributes in ((first.get(way) or {}).get("per_set") or {}).items():
        for attribute in attributes:
            cells = []
            for report in reports.values():
                for lsm in LSMS:
                    per_set = (report["systems"][lsm].get(way) or {}).get("per_set") or {}
                    found = per_set.get(data, {}).get(attribute)
                    low, high = (found or {}).get("accuracy_95ci") or [None, None]
                    cells.append("-" if not found else f"{found['accuracy']:.3f} ({low:.2f}-{high:.2f})")
            lines.append(f"| {way} {data} | {attribute} | " + " | ".join(cells) + " |")
    return lines


def compare(reports: dict[str, dict]) -> str:
    names = list(reports)
    verdicts = {name: demo_verdict(report) for name, report in reports.items()}
    lines = ["## Demo targets", "", "| target | " + " | ".join(f"{n} measured | {n}" for n in names) + " |"]
    lines.append("|---|" + "---|---|" * len(names))
    targets = [check["target"] for check in verdicts[names[0]]]
    for target in targets:
        cells = []
        for name in names:
            found = next((c for c in verdicts[name] if c["target"] == target), None)
            cells += ["-", "n/a"] if found is None else [found["measured"], _mark(found["passed"])]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    passed = {name: sum(bool(c["passed"]) for c in verdicts[name]) for name in names}
    lines += ["", "Targets passed: " + "; ".join(f"{n} {passed[n]} of {len(verdicts[n])}" for n in names), ""]
    lines += ["## Headline scores (95% intervals where the report has them)", ""]
    header = " | ".join(f"{n} {lsm}" for n in names for lsm in LSMS)
    lines += [f"| suite | score | {header} |", "|---|---|" + "---|" * (len(names) * len(LSMS))]
    for suite, key in HEADLINES:
        cells = [_score(reports[n]["systems"][lsm], suite, key) for n in names for lsm in LSMS]
        lines.append(f"| {suite} | {key} | " + " | ".join(cells) + " |")
    lines += _paraling_rows(reports, "paraling") + _paraling_rows(reports, "paraling-choice")
    return "\n".join(lines) + "\n"


def main(arguments: list[str]) -> int:
    if len(arguments) < 2 or not all("=" in a for a in arguments):
        print(__doc__, file=sys.stderr)
        return 2
    reports = {}
    for argument in arguments:
        name, _, path = argument.partition("=")
        with open(path) as handle:
            reports[name] = json.load(handle)
    print(compare(reports), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
