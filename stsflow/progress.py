"""Progress of a long loop, written to the job's log while it runs: how far, how fast, how long
to go. Every job that trains or generates for more than a few seconds reports through this one
helper (fine-tuning, GRPO, SAE training, extraction, evaluation, replay), so a slow run can be
told from a hung one by reading its Snakemake log.

A line is written for the first update (the loop has started, and at what rate), then at most
one every ``EVERY_S`` seconds, and for the last (``done == total``). The rate counts only the
work this process did: a resumed run does not claim the steps of the attempt before it.
"""

from __future__ import annotations

import logging
import math
import time

EVERY_S = 30.0


def clock(seconds: float) -> str:
    """``h:mm:ss`` (``-`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``what done/total (pct), rate, elapsed, ETA | detail`` lines through ``log`` (the rate
    in ``unit`` per second, or seconds per one when slower).
    ``start``: what was done before this process began (a resumed run), counted in ``done``
    but not in the rate. ``every``: seconds between lines (``EVERY_S`` when None)."""

    def __init__(self, what: str, total: int, unit: str = "steps", *, log=None,
                 every: float | None = None, start: int = 0):
        self.what, self.total, self.unit = what, int(total), unit
        self.log = log or logging.getLogger("stsflow").info
        self.every = EVERY_S if every is None else every
        self.done = self._start = int(start)
        self._t0 = time.monotonic()
        self._last: float | None = None

    def update(self, n: int = 1, detail: str = "", *, done: int | None = None) -> None:
        """``n`` more done (or ``done`` in all)."""
        self.done = self.done + n if done is None else int(done)
        now = time.monotonic()
        if (self._last is not None and self.done < self.total
                and now - self._last < self.every):
            return
        self._last = now
        self.log(self.line(now, detail))

    def line(self, now: float | None = None, detail: str = "") -> str:
        elapsed = (time.monotonic() if now is None else now) - self._t0
        did = self.done - self._start
        rate = did / elapsed if elapsed > 0 and did > 0 else float("nan")
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        if not math.isfinite(rate):
            speed = "rate -"
        elif rate >= 1:
            speed = f"{rate:.1f} {self.unit}/s"
        else:
            speed = f"{1 / rate:.2f} s per {self.unit.rstrip('s') or self.unit}"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        out = (f"{self.what} {self.done}/{self.total} ({pct:.0f}%), {speed}, "
               f"elapsed {clock(elapsed)}, ETA {clock(left if self.done < self.total else 0)}")
        return f"{out} | {detail}" if detail else out
