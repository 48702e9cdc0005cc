"""How a data-mixture run splits its replay budget R between the domains that have replay data.

* ``sts``: by the predictor's score of each domain (the run seed's predicted shift, at the
  configured layer, SAE and N), through an allocation rule (``mixture.allocations``, below).
* ``uniform``: equal shares.
* ``oracle``: in proportion to |Δ| of the method's plain run on each domain (known only after
  fine-tuning: the ceiling a perfect predictor would reach). |Δ| has a meaningful zero (no
  change), so proportional shares are right for it.
* ``top_k`` (sts, oracle): only the K domains of largest weight (ties by name) share R, as the
  paper split its 220 items between the two most at-risk domains.

**Allocation rules of the sts strategy** (``ALLOCATIONS``; s_d the score of domain d):

* ``proportional`` (the paper's rule, docs/method.md#data-mixture: "in proportion to their STS"; run ``-mix_sts``):
  w_d = max(s_d, 0). It reads the score as a ratio scale whose zero means "no risk". STS is not
  one: it sums the shift over N dimensions with a baseline level that every domain shares, so
  scores such as 195.0, 194.7, 197.6, 201.7 differ by a few percent of their common offset and
  their shares round to the uniform split. Invariant to scaling the scores by c > 0, not to
  adding a constant.

The other rules use only the *contrast* between domains: each is invariant to adding a constant
to every score, and to scaling them by c > 0. That is what the prediction is validated for:
Pearson ρ between the scores and |Δ| across domains (docs/method.md#correlation) is blind to a common offset and
scale, so a rule that depends on them spends budget on something no validation vouches for.
The price: however small the spread between the scores, it is read as the whole contrast; these
rules cannot tell a spread above the predictor's noise from one within it (the report's noise
ceiling and seeds can). Runs ``-mix_sts_<rule>``:

* ``softmax``: w_d = exp(z_d / T), z_d = (s_d − mean) / sd the standardised score (sd over the
  domains, ddof 0), T = ``mixture.temperature`` in standard deviations. Every domain keeps a
  share; a domain one sd above another gets e^(1/T) times its items; T → ∞ gives uniform,
  T → 0 all to the top domain. Invariant to s → a·s + b (a > 0).
* ``above_min``: w_d = s_d − min_e s_e, the proportional rule with the common offset estimated by
  the least at-risk domain, which gets nothing (linear in the score, as the paper's rule).
  Invariant to s → a·s + b (a > 0).
* ``rank``: w_d = the rank of s_d among the domains (1 the lowest, ties the mean of their
  ranks): shares from 1 to n, whatever the gaps; the ordering is all it uses, the least
  assumption about the score's scale. Invariant to any strictly increasing map of the scores.

Equal scores give equal shares under every rule. A non-finite score counts 0 under the paper's
rule and takes no part in a contrast rule (weight 0); when no domain has a weight above 0 (every
score non-finite, or none above 0 for the paper's rule) the shares are equal.

Shares become counts by the largest-remainder method (ties by name), so they sum to R exactly; a
domain's count is capped at the replay items it has, and what a cap leaves is shared again
between the others in the same proportions (``n_short`` records what no domain could take).
Torch-free."""

from __future__ import annotations

import math

from stsflow.mixture.runs import MIX_STRATEGIES


def _proportional(values: dict[str, float], temperature: float | None) -> dict[str, float]:
    return {d: max(v, 0.0) if math.isfinite(v) else 0.0 for d, v in values.items()}


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {d: v for d, v in values.items() if math.isfinite(v)}


def _softmax(values: dict[str, float], temperature: float | None) -> dict[str, float]:
    if temperature is None or not temperature > 0:
        raise ValueError(f"the softmax allocation needs a temperature above 0 "
                         f"(mixture.temperature), got {temperature!r}")
    ok = _finite(values)
    mean = sum(ok.values()) / len(ok) if ok else 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in ok.values()) / len(ok)) if ok else 0.0
    # z relative to the largest, so exp never overflows; the common factor cancels in the shares
    z = {d: (v - mean) / sd if sd > 0 else 0.0 for d, v in ok.items()}
    top = max(z.values(), default=0.0)
    return {d: math.exp((z[d] - top) / temperature) if d in ok else 0.0 for d in values}


def _above_min(values: dict[str, float], temperature: float | None) -> dict[str, float]:
    ok = _finite(values)
    low, high = min(ok.values(), default=0.0), max(ok.values(), default=0.0)
    if high == low:  # no contrast: equal shares (the formula would give every domain 0)
        return {d: 1.0 if d in ok else 0.0 for d in values}
    return {d: ok[d] - low if d in ok else 0.0 for d in values}


def _rank(values: dict[str, float], temperature: float | None) -> dict[str, float]:
    ok = _finite(values)
    # 1 + the number below, ties sharing the mean of their ranks
    return {d: (1 + sum(u < ok[d] for u in ok.values())
                + (sum(u == ok[d] for u in ok.values()) - 1) / 2) if d in ok else 0.0
            for d in values}


# the sts strategy's rules, by the names of mixture.allocations (stsflow.mixture.runs.STS_ALLOCATIONS):
# each maps the domains' scores (and the temperature, which only softmax reads) to weights
ALLOCATIONS = {"proportional": _proportional, "softmax": _softmax, "above_min": _above_min,
               "rank": _rank}


def weights(strategy: str, domains: list[str], *, scores: dict | None = None,
            abs_delta: dict | None = None, top_k: int | None = None,
            allocation: str = "proportional",
            temperature: float | None = None) -> dict[str, float]:
    """Each domain's weight under ``strategy`` (before normalisation); ``allocation`` (and, for
    softmax, ``temperature``): the sts strategy's rule."""
    if strategy not in MIX_STRATEGIES:
        raise ValueError(f"mixture.strategies: unknown strategy {strategy!r} ({MIX_STRATEGIES})")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"mixture.allocations: unknown rule {allocation!r} "
                         f"({', '.join(ALLOCATIONS)})")
    if strategy == "uniform":
        return {d: 1.0 for d in domains}
    given = scores if strategy == "sts" else abs_delta
    if given is None:
        raise ValueError(f"the {strategy} strategy needs its per-domain values")
    rule = ALLOCATIONS[allocation] if strategy == "sts" else _proportional
    w = rule({d: float(given[d]) for d in domains}, temperature)
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
