"""Statistics of the validation step (SPEC §5.3): how well STS tracks the observed accuracy change.

Pearson ρ (the paper's statistic), Spearman, R², a percentile-bootstrap CI of ρ and a permutation
p-value, computed over domains. Two protocols: all domains, and the paper's extreme-groups design
(the k largest and k smallest |Δ|), which inflates ρ and is reported next to "all" for that reason.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats as sps

STAT_COLUMNS = ("n_domains", "pearson", "pearson_p", "pearson_ci_low", "pearson_ci_high",
                "spearman", "spearman_p", "r2", "perm_p")
TARGETS = ("abs", "signed")
PROTOCOLS = ("all", "extremes")
EXTRA_KEYS = ("method", "seed")  # observed columns that split results when present
STS_PREFIX = "sts_"

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


def _bootstrap_pearson(x: np.ndarray, y: np.ndarray, n_boot: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Pearson r of ``n_boot`` resamples of the (x, y) pairs; resamples where x or y is constant
    (r undefined) are dropped, so the result may be shorter than ``n_boot``."""
    n = x.size
    out = []
    for m in _chunks(n_boot, n):
        idx = rng.integers(0, n, size=(m, n))
        xb, yb = x[idx], y[idx]
        # ptp is exact on copied values; a centred-variance test would be fooled by rounding
        ok = (np.ptp(xb, axis=1) > 0) & (np.ptp(yb, axis=1) > 0)
        xb, yb = xb[ok], yb[ok]
        xc = xb - xb.mean(axis=1, keepdims=True)
        yc = yb - yb.mean(axis=1, keepdims=True)
        r = (xc * yc).sum(axis=1) / np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
        out.append(np.clip(r, -1.0, 1.0))
    return np.concatenate(out) if out else np.empty(0)


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
              ci: float = 0.95) -> dict:
    """Correlation statistics of y on x over domains.

    Pairs with a non-finite value are dropped first (``n_domains`` counts the pairs used).
    Degenerate input (fewer than 3 pairs, or x or y constant) gives NaN statistics, not an error.
    Bootstrap and permutations draw from independent streams of ``seed``, so changing ``n_boot``
    does not change ``perm_p`` and vice versa.
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
    out.update(pearson=float(pr.statistic), pearson_p=float(pr.pvalue),
               spearman=float(sr.statistic), spearman_p=float(sr.pvalue))

    # R² from the fitted line itself rather than pearson², so a bug in either shows as a mismatch
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    yc = y - y.mean()
    out["r2"] = float(1.0 - (resid @ resid) / (yc @ yc))

    boot_ss, perm_ss = np.random.SeedSequence(seed).spawn(2)
    if n_boot > 0:
        r_boot = _bootstrap_pearson(x, y, n_boot, np.random.default_rng(boot_ss))
        # a CI from a small surviving minority of resamples would be biased towards spread data
        if r_boot.size >= max(2, math.ceil(0.5 * n_boot)):
            alpha = 1.0 - ci
            lo, hi = np.quantile(r_boot, [alpha / 2, 1.0 - alpha / 2])
            out.update(pearson_ci_low=float(lo), pearson_ci_high=float(hi))
    if n_perm > 0:
        out["perm_p"] = float(_permutation_p(x, y, n_perm, np.random.default_rng(perm_ss)))
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


def correlation_table(sts: pl.DataFrame, observed: pl.DataFrame, *, n_boot: int = 2000,
                      n_perm: int = 10000, seed: int = 0, ci: float = 0.95,
                      k_extreme: int = 4) -> pl.DataFrame:
    """Correlate every STS variant with the observed Δ, one row per
    (model, sft, layer, n_top, variant, target, protocol, metric[, method, seed]).

    Only domains present in both tables are used. The extremes selection is made once per
    (model, sft, metric[, method, seed]) among the observed domains that the STS table has for that
    (model, sft), so it is the same set for every layer, n_top and variant.
    """
    _require(sts, ["model", "sft", "layer", "n_top", "domain"], "sts")
    _require(observed, ["model", "sft", "domain", "metric", "delta"], "observed")
    variants = sts_variants(sts)
    if not variants:
        raise ValueError(f"sts table has no '{STS_PREFIX}*' column; it has {sts.columns}")
    extra = [c for c in EXTRA_KEYS if c in observed.columns]
    # Run keys (method, seed) carried by the STS table too (ICL seed; oracle method and seed)
    # pair rows of the same run; observed rows without them apply to every STS run.
    sts_extra = [c for c in EXTRA_KEYS if c in sts.columns]
    shared = [c for c in sts_extra if c in extra]
    obs_keys = ["model", "sft", "metric", *extra]
    sts_keys = ["model", "sft", "layer", "n_top", *sts_extra]
    _check_unique(observed, [*obs_keys, "domain"], "observed")
    _check_unique(sts, [*sts_keys, "domain"], "sts")

    obs = observed.select([*obs_keys, "domain", pl.col("delta").cast(pl.Float64)])
    sts_sel = sts.select([*sts_keys, "domain", *[pl.col(v).cast(pl.Float64) for v in variants]])

    selected: dict[tuple, set[str]] = {}
    usable = obs.join(sts_sel.select("model", "sft", "domain").unique(),
                      on=["model", "sft", "domain"], how="semi")
    for key, g in usable.partition_by(obs_keys, as_dict=True, maintain_order=True).items():
        absd = dict(zip(g["domain"].to_list(), np.abs(g["delta"].to_numpy()).tolist()))
        selected[key] = set(extreme_domains(absd, k=k_extreme))

    run_keys = [c for c in EXTRA_KEYS if c in extra or c in sts_extra]
    group_keys = ["model", "sft", "layer", "n_top", "metric", *run_keys]
    joined = (sts_sel.join(obs, on=["model", "sft", "domain", *shared], how="inner")
              .sort([*group_keys, "domain"], nulls_last=True, maintain_order=True))
    extra = run_keys
    out_keys = ["model", "sft", "layer", "n_top", "variant", "target", "protocol", "metric", *extra]
    records = []
    for key, g in joined.partition_by(group_keys, as_dict=True, maintain_order=True).items():
        kv = dict(zip(group_keys, key))
        delta = g["delta"].to_numpy()
        chosen = selected.get(tuple(kv[c] for c in obs_keys), set())
        in_ext = np.array([d in chosen for d in g["domain"].to_list()], dtype=bool)
        for variant in variants:
            x = g[variant].to_numpy()
            for target in TARGETS:
                y = np.abs(delta) if target == "abs" else delta
                for protocol in PROTOCOLS:
                    m = in_ext if protocol == "extremes" else slice(None)
                    res = correlate(x[m], y[m], n_boot=n_boot, n_perm=n_perm, seed=seed, ci=ci)
                    records.append({**kv, "variant": variant, "target": target,
                                    "protocol": protocol, **res})

    schema = {c: (pl.String if c in ("variant", "target", "protocol") else joined.schema[c])
              for c in out_keys}
    schema |= {c: (pl.Int64 if c == "n_domains" else pl.Float64) for c in STAT_COLUMNS}
    return pl.DataFrame(records, schema=schema) if records else pl.DataFrame(schema=schema)


def seed_summary(corr: pl.DataFrame) -> pl.DataFrame:
    """Mean and std (ddof=1) of Pearson ρ across seeds, per all other key columns.

    ``n_seeds`` counts the seeds with a finite ρ; mean and std are over those (NaN when none, std
    NaN for a single seed). Without a ``seed`` column every row is its own single-seed group.
    """
    keys = [c for c in corr.columns if c not in STAT_COLUMNS and c != "seed"]
    finite = pl.col("pearson").filter(pl.col("pearson").is_finite())
    nan = pl.lit(math.nan, dtype=pl.Float64)
    return (corr.group_by(keys, maintain_order=True)
            .agg(n_seeds=finite.len().cast(pl.Int64),
                 pearson_mean=finite.mean().cast(pl.Float64),
                 pearson_std=finite.std(ddof=1).cast(pl.Float64))
            .with_columns(pl.col("pearson_mean").fill_null(nan),
                          pl.col("pearson_std").fill_null(nan)))
