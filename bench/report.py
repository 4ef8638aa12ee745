"""Shared by the bench scripts: print a JSON report and optionally write it to a file."""

from __future__ import annotations

import json


def emit(report: dict, out: str | None) -> None:
    print(json.dumps(report, indent=1))
    if out:
        with open(out, "w") as handle:
            json.dump(report, handle, indent=1)
