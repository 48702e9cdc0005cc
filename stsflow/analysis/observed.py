"""Observed change Δ of a domain after fine-tuning, per item pair: its paired bootstrap interval
and paired standard error (what the report's noise ceiling de-noises with)."""

from __future__ import annotations

import math

import numpy as np


def bootstrap_delta_ci(before_values, after_values, *, n_boot: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Paired bootstrap over items: percentile CI (default 95 %) of mean(after) − mean(before)."""
    before = np.asarray(before_values, dtype=float)
    after = np.asarray(after_values, dtype=float)
    if before.shape != after.shape or before.ndim != 1:
        raise ValueError("before and after must be 1-D arrays of the same items")
    n = len(before)
    if n == 0:
        raise ValueError("no items")
    diff = after - before
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 2_000_000 // n))
    means = np.empty(n_boot)
    for s in range(0, n_boot, chunk):
        m = min(chunk, n_boot - s)
        means[s:s + m] = diff[rng.integers(0, n, size=(m, n))].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def delta_se(before, after) -> float:
    """Paired standard error of Δ = mean(after) − mean(before) over items:
    sd(after − before, ddof=1) / √n (NaN for fewer than 2 items)."""
    diff = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if diff.size < 2:
        return math.nan
    return float(diff.std(ddof=1) / math.sqrt(diff.size))
