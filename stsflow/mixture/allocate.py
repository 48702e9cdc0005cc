"""How a data-mixture run splits its replay budget R between the domains that have replay data.

* ``sts``: in proportion to the predictor's score of each domain (the run seed's predicted
  shift, at the configured layer, SAE and N); a negative score counts as 0.
* ``uniform``: equal shares.
* ``oracle``: in proportion to |Δ| of the method's plain run on each domain (known only after
  fine-tuning: the ceiling a perfect predictor would reach).
* ``top_k`` (sts, oracle): only the K domains of largest weight (ties by name) share R, as the
  paper split its 220 items between the two most at-risk domains.

Shares become counts by the largest-remainder method (ties by name), so they sum to R exactly; a
domain's count is capped at the replay items it has, and what a cap leaves is shared again
between the others in the same proportions (``n_short`` records what no domain could take).
Torch-free."""

from __future__ import annotations

import math

from stsflow.mode import MIX_STRATEGIES


def weights(strategy: str, domains: list[str], *, scores: dict | None = None,
            abs_delta: dict | None = None, top_k: int | None = None) -> dict[str, float]:
    """Each domain's weight under ``strategy`` (before normalisation)."""
    if strategy not in MIX_STRATEGIES:
        raise ValueError(f"mixture.strategies: unknown strategy {strategy!r} ({MIX_STRATEGIES})")
    if strategy == "uniform":
        return {d: 1.0 for d in domains}
    given = scores if strategy == "sts" else abs_delta
    if given is None:
        raise ValueError(f"the {strategy} strategy needs its per-domain values")
    w = {d: max(float(given[d]), 0.0) if math.isfinite(float(given[d])) else 0.0
         for d in domains}
    if top_k is not None:
        keep = set(sorted(domains, key=lambda d: (-w[d], d))[:top_k])
        w = {d: (w[d] if d in keep else 0.0) for d in domains}
    if sum(w.values()) <= 0:
        return {d: 1.0 for d in domains}  # no domain at risk by this measure: equal shares
    return w


def _largest_remainder(w: dict[str, float], total: int) -> dict[str, int]:
    s = sum(w.values())
    if total <= 0 or s <= 0:
        return {d: 0 for d in w}
    exact = {d: total * v / s for d, v in w.items()}
    counts = {d: math.floor(x) for d, x in exact.items()}
    left = total - sum(counts.values())
    for d in sorted(w, key=lambda d: (-(exact[d] - counts[d]), d))[:left]:
        counts[d] += 1
    return counts


def allocate(w: dict[str, float], budget: int, available: dict[str, int]) -> tuple[dict, int]:
    """(count per domain, n_short): ``budget`` items split by ``w``, each domain capped at its
    ``available`` items, what a cap leaves shared again by the same weights."""
    counts = {d: 0 for d in w}
    active = {d: v for d, v in w.items() if v > 0 and available.get(d, 0) > 0}
    left = budget
    # each pass hands out what is left; a domain that reaches its items leaves the next pass,
    # so the passes end (all handed out, or no domain with room)
    while left > 0 and active:
        for d, n in _largest_remainder(active, left).items():
            take = min(n, available[d] - counts[d])
            counts[d] += take
            left -= take
        active = {d: v for d, v in active.items() if counts[d] < available[d]}
    return counts, left
