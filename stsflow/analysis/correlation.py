"""Statistics of the validation step (docs/method.md#correlation): how well STS tracks the observed accuracy change.

Pearson ρ (the paper's statistic), Spearman, R², confidence intervals of ρ and a permutation
p-value, computed over domains. Two protocols: all domains, and the paper's extreme-groups design
(the k largest and k smallest |Δ|), which inflates ρ and is reported next to "all" for that reason.

Choices the paper leaves open, made here as a reviewer of an ML paper would expect:

- **One pre-declared primary analysis** (``report.primary``: predictor, N, layer, metric, protocol,
  target and the tuned run's method; default sts_icl, N = 100, the lowest configured layer, the
  first metric, all domains, |Δ|, the first of finetune.methods' runs, resolved by
  ``stsflow.config.primary``). Its permutation p is reported unadjusted: it is the one test
  declared before the data.
  The primary method's seeds are replicates of that one hypothesis, not new hypotheses, so they
  are not adjusted either, and the report gives their mean ± sd (ddof=1) as the paper does.
  Other methods are not replicates: each is its own hypothesis (the paper itself expects RL to
  differ from SFT), so their rows are exploratory like any other.
- **Every other tested row is exploratory**, with a Holm-adjusted permutation p within its
  family. A family is every exploratory row of one (model, sft, target, method, seed) and one
  predictor family (the registry's: the paper's STS, raw residual, random controls, similarity,
  probes; an ``_oracle`` row belongs to its predictor's family): all its predictors, layers, N
  and metrics one run's table offers a reader at once. Families by predictor family, so that the
  baselines added next to STS do not change STS's own adjusted p-values (nor does a plugin
  predictor).
  Permutation p, not the t-test p, because it assumes nothing about the distribution of 8-14
  domains. The primary row's ``holm_p`` is its own p (a family of one).
- **Extreme-groups rows are descriptive**: the domains are selected on Δ, so no test is valid;
  their p-values are left out (NaN) and their intervals are labelled "descriptive".
- **Intervals of ρ**: BCa bootstrap over domains (Efron & Tibshirani 1993, §14.3; the same
  estimator as ``scipy.stats.bootstrap(method="BCa")``), and the Fisher z interval
  tanh(atanh r ± z/√(n−3)) as a second, parametric column. Resamples with a constant variable are
  dropped; with fewer than half surviving, or a bootstrap distribution entirely on one side of r
  (BCa undefined), the interval is NaN rather than a biased one.
- **Noise ceiling**: the ρ that the measurement noise of Δ lets even a perfect predictor of the
  true Δ reach *on average*: it correlates with the measured Δ̂ = Δ + ε only as far as the noise
  lets it. An expected value, not a bound: with few domains an estimated ρ can exceed it by
  chance, which the row flags (``above_ceiling``) and the report says in those words. The true Δ is unknown and Δ̂ already carries the noise, so a stand-in for it is built
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

from stsflow.config.primary import PRIMARY_KEYS, resolve_primary  # noqa: F401
from stsflow.analysis.resampling import (
    STAT_COLUMNS,
    TARGETS,
    correlate,
    holm,
    noise_ceiling,
)
from stsflow.config.primary import PRIMARY_KEYS

# per-row columns added by correlation_table (ci_method, noise_ceiling, above_ceiling) and
# assign_roles
ROW_COLUMNS = ("ci_method", "noise_ceiling", "above_ceiling")
ROLE_COLUMNS = ("role", "holm_p")
PROTOCOLS = ("all", "extremes")
ROLES = ("primary", "exploratory", "descriptive")
EXTRA_KEYS = ("method", "seed")  # observed columns that split results when present
FAMILY_KEYS = ("model", "sft", "target", "method", "seed")
CI_METHODS = {"all": "BCa bootstrap",
              "extremes": "BCa bootstrap, descriptive (domains selected on Δ)"}


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


def predictor_names() -> set[str]:
    """Every registered predictor and its ``_oracle`` row (scored on the true shift)."""
    from stsflow.scores import PREDICTORS

    return set(PREDICTORS) | {f"{n}_oracle" for n in PREDICTORS}


def predictor_families() -> dict[str, str]:
    """Predictor (and ``_oracle`` row) name -> the registry's family of the predictor."""
    from stsflow.scores import PREDICTORS

    fams = {n: p.family for n, p in PREDICTORS.items()}
    return fams | {f"{n}_oracle": f for n, f in fams.items()}


def predictor_columns(sts: pl.DataFrame) -> list[str]:
    """Predictor columns (registered predictors and their ``_oracle`` rows), in table order."""
    names = predictor_names()
    return [c for c in sts.columns if c in names]


def site_keys(df: pl.DataFrame) -> list[str]:
    """Where a score was computed: the layer and, where the table has it, the SAE's name (a
    layer can have several SAEs, config ``sweep``)."""
    return ["layer", *(["sae"] if "sae" in df.columns else [])]


def pair_tables(sts: pl.DataFrame, observed: pl.DataFrame,
                k_extreme: int = 4) -> tuple[pl.DataFrame, list[str]]:
    """Join STS rows with the observed Δ of the same (model, sft, domain) and run; return the
    joined table (with ``delta``, ``delta_se`` (NaN when unknown) and an ``extreme`` flag) and
    its group keys (model, sft, layer, n_top, metric[, method, seed]), one correlation per group.

    The extremes selection is made once per (model, sft, metric[, method, seed]) among the
    observed domains that the STS table has for that (model, sft), so it is the same set for every
    layer, n_top and predictor. Run keys (method, seed) carried by both tables (ICL seed; oracle
    method and seed) pair rows of the same run; observed rows without them apply to every run.
    """
    _require(sts, ["model", "sft", "layer", "n_top", "domain"], "sts")
    _require(observed, ["model", "sft", "domain", "metric", "delta"], "observed")
    predictors = predictor_columns(sts)
    if not predictors:
        raise ValueError(f"sts table has no predictor column; it has {sts.columns}")
    extra = [c for c in EXTRA_KEYS if c in observed.columns]
    sts_extra = [c for c in EXTRA_KEYS if c in sts.columns]
    shared = [c for c in sts_extra if c in extra]
    obs_keys = ["model", "sft", "metric", *extra]
    sts_keys = ["model", "sft", *site_keys(sts), "n_top", *sts_extra]
    _check_unique(observed, [*obs_keys, "domain"], "observed")
    _check_unique(sts, [*sts_keys, "domain"], "sts")

    se = (pl.col("delta_se").cast(pl.Float64).fill_null(math.nan)
          if "delta_se" in observed.columns else pl.lit(math.nan, dtype=pl.Float64))
    obs = observed.select([*obs_keys, "domain", pl.col("delta").cast(pl.Float64),
                           se.alias("delta_se")])
    sts_sel = sts.select([*sts_keys, "domain", *[pl.col(v).cast(pl.Float64) for v in predictors]])

    usable = obs.join(sts_sel.select("model", "sft", "domain").unique(),
                      on=["model", "sft", "domain"], how="semi")
    chosen = []
    for key, g in usable.partition_by(obs_keys, as_dict=True, maintain_order=True).items():
        absd = dict(zip(g["domain"].to_list(), np.abs(g["delta"].to_numpy()).tolist()))
        chosen += [(*key, d) for d in extreme_domains(absd, k=k_extreme)]
    flags = pl.DataFrame(chosen, schema={c: obs.schema[c] for c in [*obs_keys, "domain"]},
                         orient="row").with_columns(extreme=pl.lit(True))

    run_keys = [c for c in EXTRA_KEYS if c in extra or c in sts_extra]
    group_keys = ["model", "sft", *site_keys(sts), "n_top", "metric", *run_keys]
    joined = (sts_sel.join(obs, on=["model", "sft", "domain", *shared], how="inner")
              .join(flags, on=[*obs_keys, "domain"], how="left", nulls_equal=True)
              .with_columns(pl.col("extreme").fill_null(False))
              .sort([*group_keys, "domain"], nulls_last=True, maintain_order=True))
    return joined, group_keys


def correlation_table(sts: pl.DataFrame, observed: pl.DataFrame, *, n_boot: int = 2000,
                      n_perm: int = 10000, seed: int = 0, ci: float = 0.95,
                      k_extreme: int = 4, n_sim: int = 2000) -> pl.DataFrame:
    """Correlate every STS predictor with the observed Δ, one row per
    (model, sft, layer, n_top, predictor, target, protocol, metric[, method, seed]), with
    ``ci_method`` and the ``noise_ceiling`` of the domains used (NaN without ``delta_se``).

    Only domains present in both tables are used (see ``pair_tables``). Extremes rows carry no
    p-value (domains selected on Δ). Roles and Holm p come later, from ``assign_roles``, once
    every table of a report is together.
    """
    joined, group_keys = pair_tables(sts, observed, k_extreme)
    predictors = predictor_columns(sts)
    out_keys = ["model", "sft", *site_keys(sts), "n_top", "predictor", "target", "protocol",
                "metric", *group_keys[group_keys.index("metric") + 1:]]
    records = []
    for key, g in joined.partition_by(group_keys, as_dict=True, maintain_order=True).items():
        kv = dict(zip(group_keys, key))
        delta, se = g["delta"].to_numpy(), g["delta_se"].to_numpy()
        masks = {"all": np.ones(g.height, dtype=bool), "extremes": g["extreme"].to_numpy()}
        ceilings: dict[tuple, float] = {}  # by (target, domains used): shared across predictors
        for predictor in predictors:
            x = g[predictor].to_numpy()
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
                    records.append({**kv, "predictor": predictor, "target": target,
                                    "protocol": protocol, **res,
                                    "ci_method": CI_METHODS[protocol],
                                    "noise_ceiling": ceilings[key],
                                    "above_ceiling": above_ceiling(res["pearson"],
                                                                   ceilings[key])})

    schema = {c: (pl.String if c in ("predictor", "target", "protocol") else joined.schema[c])
              for c in out_keys}
    schema |= {c: (pl.Int64 if c == "n_domains" else pl.Float64) for c in STAT_COLUMNS}
    schema |= {"ci_method": pl.String, "noise_ceiling": pl.Float64, "above_ceiling": pl.Boolean}
    return pl.DataFrame(records, schema=schema) if records else pl.DataFrame(schema=schema)


def above_ceiling(rho: float, ceiling: float) -> bool | None:
    """ρ above the noise ceiling (an expected value, so possible by chance); None when either is
    undefined."""
    if not (math.isfinite(rho) and math.isfinite(ceiling)):
        return None
    return bool(rho > ceiling)


def assign_roles(corr: pl.DataFrame, primary: dict | None) -> pl.DataFrame:
    """Add ``role`` (primary / exploratory / descriptive) and ``holm_p``.

    Rows matching every key of ``primary`` (PRIMARY_KEYS; a ``method`` of None matches the
    rows of Δ given in the config, which have none, and a primary without the key leaves the
    run open) are primary, extremes rows are descriptive, the rest exploratory. ``holm_p`` is
    the Holm adjustment of ``perm_p`` over the exploratory rows of each family (FAMILY_KEYS
    present in the table, and the predictor's registry family); a primary row keeps its own
    p (family of one); descriptive rows have none.
    """
    if corr.height == 0:
        return corr.with_columns(role=pl.lit(None, dtype=pl.String),
                                 holm_p=pl.lit(None, dtype=pl.Float64))
    is_primary = pl.lit(primary is not None)
    for k in PRIMARY_KEYS:
        v = (primary or {}).get(k)
        if k not in corr.columns:  # a table without SAE names has one SAE per layer
            continue
        if k == "method" and "method" not in (primary or {}):  # not declared: any run
            continue
        # a null method is the run of Δ given in the config (observed:), which has none
        is_primary = is_primary & (pl.col(k).eq_missing(pl.lit(v, dtype=corr.schema[k]))
                                   if v is not None or k == "method" else pl.lit(False))
    df = corr.with_row_index("_i").with_columns(
        role=pl.when(pl.col("protocol") == "extremes").then(pl.lit("descriptive"))
        .when(is_primary).then(pl.lit("primary")).otherwise(pl.lit("exploratory")))
    holm_p = np.full(df.height, math.nan)
    fam = [c for c in FAMILY_KEYS if c in df.columns] + ["_family"]
    df = df.with_columns(_family=pl.col("predictor").replace_strict(
        predictor_families(), default="other", return_dtype=pl.String))
    for g in df.filter(pl.col("role") == "exploratory").partition_by(fam, maintain_order=True):
        holm_p[g["_i"].to_numpy()] = holm(g["perm_p"].to_numpy())
    prim = df["role"].to_numpy() == "primary"
    holm_p[prim] = df["perm_p"].to_numpy()[prim]
    return df.with_columns(holm_p=pl.Series(holm_p, dtype=pl.Float64)).drop("_i", "_family")


def seed_summary(corr: pl.DataFrame) -> pl.DataFrame:
    """Mean and std (ddof=1) of Pearson ρ across seeds, per all other key columns.

    ``n_seeds`` counts the seeds with a finite value; mean and std are over those (NaN when none,
    std NaN for a single seed). Without a ``seed`` column every row is its own single-seed group.
    Per-seed numbers (p-values, intervals, ceilings) are not keys.
    """
    per_seed = {*STAT_COLUMNS, "seed", "noise_ceiling", "above_ceiling", "holm_p"}
    keys = [c for c in corr.columns if c not in per_seed]
    finite = pl.col("pearson").filter(pl.col("pearson").is_finite())
    nan = pl.lit(math.nan, dtype=pl.Float64)
    return (corr.group_by(keys, maintain_order=True)
            .agg(n_seeds=finite.len().cast(pl.Int64),
                 pearson_mean=finite.mean().cast(pl.Float64),
                 pearson_std=finite.std(ddof=1).cast(pl.Float64))
            .with_columns(pl.col("pearson_mean").fill_null(nan),
                          pl.col("pearson_std").fill_null(nan)))
