"""Numbers as the report prints them: a missing or non-finite value as "n/a", ρ with its
interval. One place, so the tables, the sentences and the plot titles print a value alike."""

from __future__ import annotations

import math

import numpy as np

NA = "n/a"


def _isnum(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def fmt(v, spec: str = ".4g") -> str:
    """A cell's text: a float by ``spec``, None and non-finite floats as n/a."""
    if v is None:
        return NA
    if isinstance(v, (float, np.floating)):
        return NA if not math.isfinite(v) else format(float(v), spec)
    return str(v)


def fmt_rho(row: dict) -> str:
    """ρ of a correlation row with its interval, "ρ [low, high]", or ρ alone without one."""
    rho = fmt(row["pearson"], ".2f")
    lo, hi = row["pearson_ci_low"], row["pearson_ci_high"]
    if rho == NA or not (_isnum(lo) and _isnum(hi) and math.isfinite(lo) and math.isfinite(hi)):
        return rho
    return f"{rho} [{lo:.2f}, {hi:.2f}]"


def finite(v) -> bool:
    """A number, and finite (None, NaN and text are not)."""
    return _isnum(v) and math.isfinite(v)


def fmt_ci(lo, hi) -> str:
    """An interval, "[low, high]", or n/a where either end is missing."""
    return f"[{lo:.2f}, {hi:.2f}]" if finite(lo) and finite(hi) else NA
