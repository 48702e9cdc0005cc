"""Numeric domains (arithmetic, business, physics, chemistry, engineering): templates that draw a
question, its worked explanation and its exact answer, and distractors that model typical slips
(wrong operation, forgotten step), so wrong options are tempting rather than random.

One module per domain, each a tuple of templates (``TEMPLATES``); ``formats`` prints the
options. A template returns (question, worked explanation, answer value, option formatter,
plausible wrong values)."""

from __future__ import annotations

from fractions import Fraction as F
from typing import Callable

from stsflow.data.builtin.numeric import arithmetic, business, chemistry, engineering, physics

_NUMERIC_TEMPLATES: dict[str, tuple[Callable, ...]] = {
    "arithmetic": arithmetic.TEMPLATES,
    "business": business.TEMPLATES,
    "physics": physics.TEMPLATES,
    "chemistry": chemistry.TEMPLATES,
    "engineering": engineering.TEMPLATES,
}


def _scale(v: F) -> F:
    """Power of ten just below ``v``: the step for 'nearby' distractors."""
    s = F(1)
    while s * 10 <= v:
        s *= 10
    while s > v:
        s /= 10
    return s


def _numeric_distractors(rng, value, fmt, mistakes, k) -> list[str]:
    """``k`` wrong options: typical slips first, then nearby values; each must print differently
    from the answer and be a positive, exactly printable number."""
    value = F(value)
    s = _scale(value)
    nearby = [value + s, value - s, value + 2 * s, value * 2, value / 2, value - 2 * s, value + 3 * s]
    rng.shuffle(nearby)
    nearby += [value + i * s for i in range(4, 9)]  # always distinct and positive: never runs dry
    right = fmt(value)
    out: list[str] = []
    for cand in list(mistakes) + nearby:
        cand = F(cand)
        if cand <= 0:
            continue
        try:
            text = fmt(cand)
        except ValueError:  # e.g. 1/3: not printable exactly, so not offered
            continue
        if text != right and text not in out:
            out.append(text)
        if len(out) == k:
            return out
    raise RuntimeError(f"not enough distractors for {right}")
