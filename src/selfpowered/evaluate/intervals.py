"""Bootstrap intervals: every rate the evaluation reports comes with one (items resampled, seeded)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def bootstrap_interval(values: Sequence[float], statistic, draws: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of `statistic` over items resampled with replacement (seeded)."""
    rng = random.Random(seed)
    n = len(values)
    estimates = [statistic([values[rng.randrange(n)] for _ in range(n)]) for _ in range(draws)]
    estimates = sorted(e for e in estimates if e == e)  # a resample can leave a ratio undefined (nan)
    if not estimates:
        return None, None
    return _round(estimates[int(0.025 * len(estimates))]), _round(estimates[int(0.975 * len(estimates)) - 1])
