"""Shared by the bench scripts: print a JSON report and optionally write it to a file."""

from __future__ import annotations

import json
import time
from pathlib import Path


def emit(report: dict, out: str | None, started: float | None = None) -> None:
    """Print `report` and write it to `out` (its folder made); with `started` (a perf_counter
    reading) it is stamped with the seconds since then and the UTC date first."""
    if started is not None:
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(report, indent=1))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as handle:
            json.dump(report, handle, indent=1)
