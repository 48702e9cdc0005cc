"""Resampling estimators for one correlation: BCa bootstrap and Fisher intervals, permutation
p-values, Holm's adjustment and the noise ceiling of a correlation with a noisy Δ. Vectorised
over resamples in bounded chunks so a large bootstrap never holds more than a few MB."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from scipy.special import ndtr, ndtri

TARGETS = ("abs", "signed")


STAT_COLUMNS = ("n_domains", "pearson", "pearson_p", "pearson_ci_low", "pearson_ci_high",
                "pearson_fisher_low", "pearson_fisher_high", "spearman", "spearman_p", "r2",
                "perm_p")


# Resampling works on (chunk, n) matrices; this bounds their size so a large n cannot blow memory.
_MAX_CHUNK_ELEMENTS = 2_000_000
# |r_perm| within this of |r_obs| counts as "at least as extreme": float noise from a different
# summation order must not turn a tie (e.g. the identity permutation) into a miss.
_PERM_TIE_TOL = 1e-12


def _nan_result(n: int) -> dict:
    out = {k: math.nan for k in STAT_COLUMNS}
    out["n_domains"] = int(n)
    return out


def _chunks(total: int, n: int):
    size = max(1, _MAX_CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, total, size):
        yield min(size, total - start)


def _row_pearson(xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """Pearson r of every row pair of two (m, n) matrices; rows where x or y is constant (r
    undefined) are dropped."""
    # ptp is exact on copied values; a centred-variance test would be fooled by rounding
    ok = (np.ptp(xb, axis=1) > 0) & (np.ptp(yb, axis=1) > 0)
    xb, yb = xb[ok], yb[ok]
    xc = xb - xb.mean(axis=1, keepdims=True)
    yc = yb - yb.mean(axis=1, keepdims=True)
    r = (xc * yc).sum(axis=1) / np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


def _bootstrap_pearson(x: np.ndarray, y: np.ndarray, n_boot: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Pearson r of ``n_boot`` resamples of the (x, y) pairs (index matrices drawn as
    ``rng.integers(0, n, (m, n))``, as scipy.stats.bootstrap does); resamples where x or y is
    constant are dropped, so the result may be shorter than ``n_boot``."""
    n = x.size
    out = []
    for m in _chunks(n_boot, n):
        idx = rng.integers(0, n, size=(m, n))
        out.append(_row_pearson(x[idx], y[idx]))
    return np.concatenate(out) if out else np.empty(0)


def _jackknife_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out Pearson r (NaN where the remaining x or y is constant)."""
    idx = np.array([np.delete(np.arange(x.size), i) for i in range(x.size)])
    xs, ys = x[idx], y[idx]
    out = np.full(x.size, math.nan)
    ok = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
    out[ok] = _row_pearson(xs[ok], ys[ok])
    return out


def bca_interval(theta_hat: float, theta_boot: np.ndarray, theta_jack: np.ndarray,
                 ci: float = 0.95) -> tuple[float, float]:
    """Bias-corrected and accelerated bootstrap interval (Efron & Tibshirani 1993, eqs. 14.10,
    14.14, 14.15). z0 from the share of resamples below θ̂ (ties count half, as scipy does);
    acceleration from the jackknife. NaN when undefined (every resample on one side of θ̂, or a
    jackknife value undefined)."""
    boot = np.asarray(theta_boot, dtype=np.float64)
    jack = np.asarray(theta_jack, dtype=np.float64)
    if boot.size == 0 or not np.isfinite(jack).all():
        return math.nan, math.nan
    share = (np.count_nonzero(boot < theta_hat) + np.count_nonzero(boot <= theta_hat)) \
        / (2 * boot.size)
    if not 0.0 < share < 1.0:
        return math.nan, math.nan
    z0 = float(ndtri(share))
    u = jack.mean() - jack
    ss = float(u @ u)
    a = float((u ** 3).sum() / (6.0 * ss ** 1.5)) if ss > 0 else 0.0
    levels = []
    for z in (ndtri((1.0 - ci) / 2), ndtri((1.0 + ci) / 2)):
        levels.append(float(ndtr(z0 + (z0 + z) / (1.0 - a * (z0 + z)))))
    lo, hi = np.quantile(boot, levels)
    return float(lo), float(hi)


def pearson_bca(x, y, *, n_boot: int, rng: np.random.Generator,
                ci: float = 0.95) -> tuple[float, float]:
    """BCa bootstrap interval of Pearson r over (x, y) pairs; NaN when fewer than half of the
    resamples have r defined (a CI from a minority would be biased towards spread data)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    r_boot = _bootstrap_pearson(x, y, n_boot, rng)
    if r_boot.size < max(2, math.ceil(0.5 * n_boot)):
        return math.nan, math.nan
    r_hat = float(_row_pearson(x[None], y[None])[0])
    return bca_interval(r_hat, r_boot, _jackknife_pearson(x, y), ci)


def fisher_interval(r: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """tanh(atanh r ± z_{(1+ci)/2} / √(n − 3)); NaN for n ≤ 3 or |r| = 1."""
    if n <= 3 or not math.isfinite(r) or abs(r) >= 1.0:
        return math.nan, math.nan
    half = float(ndtri((1.0 + ci) / 2)) / math.sqrt(n - 3)
    z = math.atanh(r)
    return math.tanh(z - half), math.tanh(z + half)


def _permutation_p(x: np.ndarray, y: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided permutation p of Pearson r: (#{|r_perm| >= |r_obs|} + 1) / (n_perm + 1)."""
    xc = x - x.mean()
    yc = y - y.mean()
    # norms and the mean are invariant under permutation, so only the cross term is recomputed
    denom = math.sqrt(float(xc @ xc) * float(yc @ yc))
    r_obs = abs(float(xc @ yc) / denom)
    hits = 0
    for m in _chunks(n_perm, x.size):
        yp = rng.permuted(np.tile(yc, (m, 1)), axis=1)
        hits += int(np.count_nonzero(np.abs(yp @ xc) / denom >= r_obs - _PERM_TIE_TOL))
    return (hits + 1) / (n_perm + 1)


def correlate(x, y, *, n_boot: int = 2000, n_perm: int = 10000, seed: int = 0,
              ci: float = 0.95, tested: bool = True) -> dict:
    """Correlation statistics of y on x over domains.

    Pairs with a non-finite value are dropped first (``n_domains`` counts the pairs used).
    Degenerate input (fewer than 3 pairs, or x or y constant) gives NaN statistics, not an error.
    ``pearson_ci_*`` is the BCa bootstrap interval, ``pearson_fisher_*`` the Fisher z one.
    Bootstrap and permutations draw from independent streams of ``seed``, so changing ``n_boot``
    does not change ``perm_p`` and vice versa. ``tested=False`` (domains selected on y) leaves
    every p-value NaN: no test is valid after selecting on the outcome.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    if n_boot < 0 or n_perm < 0:
        raise ValueError("n_boot and n_perm must be non-negative")
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = x.size
    out = _nan_result(n)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out

    pr = sps.pearsonr(x, y)
    sr = sps.spearmanr(x, y)
    out.update(pearson=float(pr.statistic), spearman=float(sr.statistic))
    if tested:
        out.update(pearson_p=float(pr.pvalue), spearman_p=float(sr.pvalue))

    # R² from the fitted line itself rather than pearson², so a bug in either shows as a mismatch
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    yc = y - y.mean()
    out["r2"] = float(1.0 - (resid @ resid) / (yc @ yc))
    out["pearson_fisher_low"], out["pearson_fisher_high"] = fisher_interval(out["pearson"], n, ci)

    boot_ss, perm_ss = np.random.SeedSequence(seed).spawn(2)
    if n_boot > 0:
        out["pearson_ci_low"], out["pearson_ci_high"] = pearson_bca(
            x, y, n_boot=n_boot, rng=np.random.default_rng(boot_ss), ci=ci)
    if n_perm > 0 and tested:
        out["perm_p"] = float(_permutation_p(x, y, n_perm, np.random.default_rng(perm_ss)))
    return out


def noise_ceiling(delta, se, *, target: str = "abs", n_sim: int = 2000, seed: int = 0) -> float:
    """The highest Pearson ρ with the measured Δ that its noise allows (see the module docstring):
    mean over ``n_sim`` draws of corr(f(Δ*), f(Δ* + ε)), ε_d ~ N(0, se_d²), with Δ* the measured Δ
    shrunk to the between-domain spread τ² its noise leaves, f = |·| (``abs``) or the identity
    (``signed``). 0 when τ² = 0; NaN when any SE is unknown, for fewer than 3 domains or a
    constant Δ; draws where f(Δ* + ε) is constant are dropped."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    delta = np.asarray(delta, dtype=np.float64).ravel()
    se = np.asarray(se, dtype=np.float64).ravel()
    if delta.shape != se.shape:
        raise ValueError(f"delta and se differ in length: {delta.size} vs {se.size}")
    f = np.abs if target == "abs" else (lambda v: v)
    if (delta.size < 3 or not (np.isfinite(delta).all() and np.isfinite(se).all())
            or (se < 0).any() or np.ptp(delta) == 0):
        return math.nan
    var = float(np.var(delta, ddof=1))
    tau2 = max(0.0, var - float(np.mean(se ** 2)))
    if tau2 == 0.0:
        return 0.0
    truth = delta.mean() + math.sqrt(tau2 / var) * (delta - delta.mean())
    if np.ptp(f(truth)) == 0:
        return math.nan
    rng = np.random.default_rng(seed)
    base = f(truth)
    sims = []
    for m in _chunks(n_sim, delta.size):
        noisy = f(truth + rng.standard_normal((m, delta.size)) * se)
        sims.append(_row_pearson(np.broadcast_to(base, noisy.shape).copy(), noisy))
    r = np.concatenate(sims) if sims else np.empty(0)
    return float(r.mean()) if r.size else math.nan


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values: with the m finite p sorted ascending, the i-th (from 1)
    becomes max_{j ≤ i} min(1, (m − j + 1) p_(j)). NaN entries stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
