"""Statistics of the validation step (SPEC §5.3): how well STS tracks the observed accuracy change.

Pearson ρ (the paper's statistic), Spearman, R², confidence intervals of ρ and a permutation
p-value, computed over domains. Two protocols: all domains, and the paper's extreme-groups design
(the k largest and k smallest |Δ|), which inflates ρ and is reported next to "all" for that reason.

Choices the paper leaves open, made here as a reviewer of an ML paper would expect:

- **One pre-declared primary analysis** (``report.primary``: variant, N, layer, metric, protocol,
  target; default sts_icl, N = 100, the lowest configured layer, the first metric, all domains,
  |Δ|). Its permutation p is reported unadjusted: it is the one test declared before the data.
  With several fine-tuning runs (method × seed) the primary analysis is run once per run; these
  are replicates of one hypothesis, not new hypotheses, so they are not adjusted either, and the
  report gives their mean ± sd (ddof=1) as the paper does.
- **Every other tested row is exploratory**, with a Holm-adjusted permutation p within its
  family. A family is every exploratory row of one (model, sft, target, method, seed): all
  variants (oracle included), layers, N and metrics one run's table offers a reader at once.
  Permutation p, not the t-test p, because it assumes nothing about the distribution of 8-14
  domains. The primary row's ``holm_p`` is its own p (a family of one).
- **Extreme-groups rows are descriptive**: the domains are selected on Δ, so no test is valid;
  their p-values are left out (NaN) and their intervals are labelled "descriptive".
- **Intervals of ρ**: BCa bootstrap over domains (Efron & Tibshirani 1993, §14.3; the same
  estimator as ``scipy.stats.bootstrap(method="BCa")``), and the Fisher z interval
  tanh(atanh r ± z/√(n−3)) as a second, parametric column. Resamples with a constant variable are
  dropped; with fewer than half surviving, or a bootstrap distribution entirely on one side of r
  (BCa undefined), the interval is NaN rather than a biased one.
- **Noise ceiling**: the highest ρ that the measurement noise of Δ allows. Even a perfect
  predictor of the true Δ correlates with the measured Δ̂ = Δ + ε only as far as the noise lets
  it. The true Δ is unknown and Δ̂ already carries the noise, so a stand-in for it is built
  first: its spread across domains is τ² = max(0, var(Δ̂) − mean SE²) (the method-of-moments
  between-domain variance), and Δ* = mean + √(τ²/var Δ̂)·(Δ̂ − mean) has exactly that spread.
  The ceiling is the mean over simulations of corr(f(Δ*), f(Δ* + ε)), ε_d ~ N(0, SE_d²), f = |·|
  for target abs (which handles the fold at 0 that a reliability formula ignores) and the
  identity for target signed (where it is ≈ √(τ²/(τ² + SE²)), the classical attenuation bound).
  When the domains' Δ̂ vary no more than their noise (τ² = 0) the ceiling is 0: no predictor can
  be seen to track them. SE_d is the paired standard error of Δ over items; Δ given in the config
  has no SE and no ceiling (NaN, shown as n/a).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats as sps
from scipy.special import ndtr, ndtri

STAT_COLUMNS = ("n_domains", "pearson", "pearson_p", "pearson_ci_low", "pearson_ci_high",
                "pearson_fisher_low", "pearson_fisher_high", "spearman", "spearman_p", "r2",
                "perm_p")
# per-row columns added by correlation_table (ci_method, noise_ceiling) and assign_roles
ROW_COLUMNS = ("ci_method", "noise_ceiling")
ROLE_COLUMNS = ("role", "holm_p")
TARGETS = ("abs", "signed")
PROTOCOLS = ("all", "extremes")
ROLES = ("primary", "exploratory", "descriptive")
EXTRA_KEYS = ("method", "seed")  # observed columns that split results when present
FAMILY_KEYS = ("model", "sft", "target", "method", "seed")
PRIMARY_KEYS = ("variant", "n_top", "layer", "metric", "protocol", "target")
PRIMARY_DEFAULT_N = 100  # the paper's N, used when report.primary.n_top is null
STS_PREFIX = "sts_"
CI_METHODS = {"all": "BCa bootstrap",
              "extremes": "BCa bootstrap, descriptive (domains selected on Δ)"}

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


def delta_se(before, after) -> float:
    """Paired standard error of Δ = mean(after) − mean(before) over items:
    sd(after − before, ddof=1) / √n (NaN for fewer than 2 items)."""
    diff = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if diff.size < 2:
        return math.nan
    return float(diff.std(ddof=1) / math.sqrt(diff.size))


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


def extreme_domains(abs_delta: dict[str, float], k: int = 4) -> list[str]:
    """The paper's extreme-groups selection: the k domains with the largest and the k with the
    smallest |Δ|. Domains are ranked in one total order by (|Δ|, name), so ties resolve by name and
    the two groups never overlap. Domains with a non-finite value cannot be ranked and are left
    out; with ≤ 2k rankable domains all of them are returned. Result sorted by name."""
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    vals = {d: float(v) for d, v in abs_delta.items() if v is not None and math.isfinite(v)}
    if len(vals) <= 2 * k:
        return sorted(vals)
    order = sorted(vals, key=lambda d: (vals[d], d))
    return sorted(order[:k] + order[len(order) - k:])


def _require(df: pl.DataFrame, cols, name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name} table lacks column(s) {missing}; it has {df.columns}")


def _check_unique(df: pl.DataFrame, keys: list[str], name: str) -> None:
    dup = df.group_by(keys).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"{name} table has {dup.height} duplicated key(s) on {keys}, e.g. "
                         f"{dup.drop('len').row(0, named=True)}; there must be one row per key")


def sts_variants(sts: pl.DataFrame) -> list[str]:
    """STS variant columns (every column named ``sts_*``), in table order."""
    return [c for c in sts.columns if c.startswith(STS_PREFIX)]


def pair_tables(sts: pl.DataFrame, observed: pl.DataFrame,
                k_extreme: int = 4) -> tuple[pl.DataFrame, list[str]]:
    """Join STS rows with the observed Δ of the same (model, sft, domain) and run; return the
    joined table (with ``delta``, ``delta_se`` (NaN when unknown) and an ``extreme`` flag) and
    its group keys (model, sft, layer, n_top, metric[, method, seed]), one correlation per group.

    The extremes selection is made once per (model, sft, metric[, method, seed]) among the
    observed domains that the STS table has for that (model, sft), so it is the same set for every
    layer, n_top and variant. Run keys (method, seed) carried by both tables (ICL seed; oracle
    method and seed) pair rows of the same run; observed rows without them apply to every run.
    """
    _require(sts, ["model", "sft", "layer", "n_top", "domain"], "sts")
    _require(observed, ["model", "sft", "domain", "metric", "delta"], "observed")
    variants = sts_variants(sts)
    if not variants:
        raise ValueError(f"sts table has no '{STS_PREFIX}*' column; it has {sts.columns}")
    extra = [c for c in EXTRA_KEYS if c in observed.columns]
    sts_extra = [c for c in EXTRA_KEYS if c in sts.columns]
    shared = [c for c in sts_extra if c in extra]
    obs_keys = ["model", "sft", "metric", *extra]
    sts_keys = ["model", "sft", "layer", "n_top", *sts_extra]
    _check_unique(observed, [*obs_keys, "domain"], "observed")
    _check_unique(sts, [*sts_keys, "domain"], "sts")

    se = (pl.col("delta_se").cast(pl.Float64).fill_null(math.nan)
          if "delta_se" in observed.columns else pl.lit(math.nan, dtype=pl.Float64))
    obs = observed.select([*obs_keys, "domain", pl.col("delta").cast(pl.Float64),
                           se.alias("delta_se")])
    sts_sel = sts.select([*sts_keys, "domain", *[pl.col(v).cast(pl.Float64) for v in variants]])

    usable = obs.join(sts_sel.select("model", "sft", "domain").unique(),
                      on=["model", "sft", "domain"], how="semi")
    chosen = []
    for key, g in usable.partition_by(obs_keys, as_dict=True, maintain_order=True).items():
        absd = dict(zip(g["domain"].to_list(), np.abs(g["delta"].to_numpy()).tolist()))
        chosen += [(*key, d) for d in extreme_domains(absd, k=k_extreme)]
    flags = pl.DataFrame(chosen, schema={c: obs.schema[c] for c in [*obs_keys, "domain"]},
                         orient="row").with_columns(extreme=pl.lit(True))

    run_keys = [c for c in EXTRA_KEYS if c in extra or c in sts_extra]
    group_keys = ["model", "sft", "layer", "n_top", "metric", *run_keys]
    joined = (sts_sel.join(obs, on=["model", "sft", "domain", *shared], how="inner")
              .join(flags, on=[*obs_keys, "domain"], how="left", nulls_equal=True)
              .with_columns(pl.col("extreme").fill_null(False))
              .sort([*group_keys, "domain"], nulls_last=True, maintain_order=True))
    return joined, group_keys


def correlation_table(sts: pl.DataFrame, observed: pl.DataFrame, *, n_boot: int = 2000,
                      n_perm: int = 10000, seed: int = 0, ci: float = 0.95,
                      k_extreme: int = 4, n_sim: int = 2000) -> pl.DataFrame:
    """Correlate every STS variant with the observed Δ, one row per
    (model, sft, layer, n_top, variant, target, protocol, metric[, method, seed]), with
    ``ci_method`` and the ``noise_ceiling`` of the domains used (NaN without ``delta_se``).

    Only domains present in both tables are used (see ``pair_tables``). Extremes rows carry no
    p-value (domains selected on Δ). Roles and Holm p come later, from ``assign_roles``, once
    every table of a report is together.
    """
    joined, group_keys = pair_tables(sts, observed, k_extreme)
    variants = sts_variants(sts)
    out_keys = ["model", "sft", "layer", "n_top", "variant", "target", "protocol", "metric",
                *group_keys[5:]]
    records = []
    for key, g in joined.partition_by(group_keys, as_dict=True, maintain_order=True).items():
        kv = dict(zip(group_keys, key))
        delta, se = g["delta"].to_numpy(), g["delta_se"].to_numpy()
        masks = {"all": np.ones(g.height, dtype=bool), "extremes": g["extreme"].to_numpy()}
        ceilings: dict[tuple, float] = {}  # by (target, domains used): shared across variants
        for variant in variants:
            x = g[variant].to_numpy()
            usable = np.isfinite(x) & np.isfinite(delta)  # the pairs correlate() keeps
            for target in TARGETS:
                y = np.abs(delta) if target == "abs" else delta
                for protocol, m in masks.items():
                    res = correlate(x[m], y[m], n_boot=n_boot, n_perm=n_perm, seed=seed, ci=ci,
                                    tested=protocol == "all")
                    used = m & usable
                    key = (target, used.tobytes())
                    if key not in ceilings:
                        ceilings[key] = noise_ceiling(delta[used], se[used], target=target,
                                                      n_sim=n_sim, seed=seed)
                    records.append({**kv, "variant": variant, "target": target,
                                    "protocol": protocol, **res,
                                    "ci_method": CI_METHODS[protocol],
                                    "noise_ceiling": ceilings[key]})

    schema = {c: (pl.String if c in ("variant", "target", "protocol") else joined.schema[c])
              for c in out_keys}
    schema |= {c: (pl.Int64 if c == "n_domains" else pl.Float64) for c in STAT_COLUMNS}
    schema |= {"ci_method": pl.String, "noise_ceiling": pl.Float64}
    return pl.DataFrame(records, schema=schema) if records else pl.DataFrame(schema=schema)


def resolve_primary(primary: dict, layers, metrics, n_tops=None) -> dict:
    """The pre-declared primary analysis with its defaults filled: n_top null → 100 (the paper's
    N), or, when ``n_tops`` (sts.n_top) lacks 100, the configured N closest to it (the smaller on
    a tie) — still fixed by the config alone, before any result exists; layer null → the lowest
    configured layer (the validated config keeps no YAML key order, so "first" is numeric),
    metric null → the first of ``metrics`` (evaluate.metrics with fine-tuning, else the observed
    entries' metrics in config order)."""
    out = {k: primary.get(k) for k in PRIMARY_KEYS}
    if out["n_top"] is None:
        out["n_top"] = PRIMARY_DEFAULT_N
        if n_tops and PRIMARY_DEFAULT_N not in n_tops:
            out["n_top"] = min(n_tops, key=lambda n: (abs(n - PRIMARY_DEFAULT_N), n))
    if out["layer"] is None and layers:
        out["layer"] = min(int(v) for v in layers)
    if out["metric"] is None and metrics:
        out["metric"] = list(metrics)[0]
    return out


def assign_roles(corr: pl.DataFrame, primary: dict | None) -> pl.DataFrame:
    """Add ``role`` (primary / exploratory / descriptive) and ``holm_p``.

    Rows matching every key of ``primary`` (PRIMARY_KEYS) are primary, extremes rows are
    descriptive, the rest exploratory. ``holm_p`` is the Holm adjustment of ``perm_p`` over the
    exploratory rows of each family (FAMILY_KEYS present in the table); a primary row keeps its own
    p (family of one); descriptive rows have none.
    """
    if corr.height == 0:
        return corr.with_columns(role=pl.lit(None, dtype=pl.String),
                                 holm_p=pl.lit(None, dtype=pl.Float64))
    is_primary = pl.lit(primary is not None)
    for k in PRIMARY_KEYS:
        v = (primary or {}).get(k)
        is_primary = is_primary & (pl.col(k).eq_missing(pl.lit(v, dtype=corr.schema[k]))
                                   if v is not None else pl.lit(False))
    df = corr.with_row_index("_i").with_columns(
        role=pl.when(pl.col("protocol") == "extremes").then(pl.lit("descriptive"))
        .when(is_primary).then(pl.lit("primary")).otherwise(pl.lit("exploratory")))
    holm_p = np.full(df.height, math.nan)
    fam = [c for c in FAMILY_KEYS if c in df.columns]
    for g in df.filter(pl.col("role") == "exploratory").partition_by(fam, maintain_order=True):
        holm_p[g["_i"].to_numpy()] = holm(g["perm_p"].to_numpy())
    prim = df["role"].to_numpy() == "primary"
    holm_p[prim] = df["perm_p"].to_numpy()[prim]
    return df.with_columns(holm_p=pl.Series(holm_p, dtype=pl.Float64)).drop("_i")


def seed_summary(corr: pl.DataFrame) -> pl.DataFrame:
    """Mean and std (ddof=1) of Pearson ρ across seeds, per all other key columns.

    ``n_seeds`` counts the seeds with a finite value; mean and std are over those (NaN when none,
    std NaN for a single seed). Without a ``seed`` column every row is its own single-seed group.
    Per-seed numbers (p-values, intervals, ceilings) are not keys.
    """
    per_seed = {*STAT_COLUMNS, "seed", "noise_ceiling", "holm_p"}
    keys = [c for c in corr.columns if c not in per_seed]
    finite = pl.col("pearson").filter(pl.col("pearson").is_finite())
    nan = pl.lit(math.nan, dtype=pl.Float64)
    return (corr.group_by(keys, maintain_order=True)
            .agg(n_seeds=finite.len().cast(pl.Int64),
                 pearson_mean=finite.mean().cast(pl.Float64),
                 pearson_std=finite.std(ddof=1).cast(pl.Float64))
            .with_columns(pl.col("pearson_mean").fill_null(nan),
                          pl.col("pearson_std").fill_null(nan)))
