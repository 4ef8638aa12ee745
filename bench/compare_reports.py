"""Do two evaluation runs give the same answers and scores? (e.g. before / after a refactor)

    .venv/bin/python bench/compare_reports.py OLD/report.json NEW/report.json

Compares every system's answers per suite and every suite's scores (costs are timings and differ).
Exit code 0 when everything is identical, 1 otherwise.
"""

from __future__ import annotations

import json
import sys


def main(old_path: str, new_path: str) -> int:
    old, new = (json.load(open(path)) for path in (old_path, new_path))
    same = different = 0
    for suite, systems in old["examples"].items():
        for name, answers in systems.items():
            if new["examples"].get(suite, {}).get(name) == answers:
                same += 1
            else:
                different += 1
                print(f"answers differ: {suite} / {name}")
    for name, row in old["systems"].items():
        for suite, scores in row.items():
            if suite not in ("cost", "kind") and new["systems"].get(name, {}).get(suite) != scores:
                different += 1
                print(f"scores differ: {name} / {suite}")
    print(f"identical answer lists: {same}; differences: {different}")
    return 0 if different == 0 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
