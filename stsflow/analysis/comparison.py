"""Does STS beat the cheap predictors here? The predictor panel side by side on the primary
analysis's Δ (analysis.correlation), and an ablation table over layer and N.

For the primary analysis (its N, layer, metric, protocol and target) and each fine-tuning run,
one row per predictor: Pearson ρ with its BCa interval and permutation p, from the correlation
table (so every number is the one ``correlations.parquet`` holds), plus

- ``post_training``: the ``_oracle`` rows, which need the tuned model (the true shifted
  dimensions), are labelled so and never count as a baseline;
- the random-dimension control (``<formula>_randdims``): the ρ of each of ``sts.random_draws``
  random N-sets of SAE dimensions, given as the mean with the 2.5-97.5 % range over draws
  (``ci_method`` says so) and ``share_at_least``, the share of draws whose ρ reaches that of the
  same STS formula on D_N (sts_act or sts_icl of the same run). These rows exist only here, not
  in ``correlations.parquet``: they are a distribution of correlations, not one predictor;
- ``diff``/``diff_low``/``diff_high``: ρ(primary) − s·ρ(baseline) with a paired percentile
  bootstrap interval over domains (both correlations on the same resampled domains), s = the sign
  of the baseline's ρ. Orienting each baseline by its own sign gives it the benefit of the doubt:
  a similarity that is *anti*-correlated with |Δ| predicts as well as one that is correlated, and
  the orientation is chosen on these data, so the comparison is conservative for STS;
- ``best_baseline``: the pre-training baseline (not the paper's STS, not the authors' notebook
  variant, not a random control, not post-training) with the largest |ρ|; its row answers "does STS beat the best cheap predictor here".
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from stsflow.analysis.correlation import pair_tables, predictor_columns, site_keys

COMPARISON_COLUMNS = ("predictor", "family", "post_training", "n_domains", "pearson",
                      "pearson_ci_low", "pearson_ci_high", "ci_method", "perm_p", "holm_p",
                      "share_at_least", "diff", "diff_low", "diff_high", "best_baseline")
# families that are not cheap baselines: the paper's STS, random controls, the authors' notebook
NOT_BASELINES = ("sts", "random", "notebook")
# random-draw column -> (its row's name, the STS predictor whose D_N the draws replace)
RAND_FORMULAS = {"rand_act": ("sts_act_randdims", "sts_act"),
                 "rand_icl": ("sts_icl_randdims", "sts_icl")}


def _family(name: str) -> str:
    from stsflow.scores import PREDICTORS

    base = name.removesuffix("_oracle")
    if base in PREDICTORS:
        return PREDICTORS[base].family
    return "random" if name in {n for n, _ in RAND_FORMULAS.values()} else "other"


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (m, n) matrices; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=1) / den, np.nan)


def paired_diff(x_a: np.ndarray, x_b: np.ndarray, y: np.ndarray, *, n_boot: int, seed: int,
                ci: float = 0.95, sign_b: float = 1.0) -> tuple[float, float, float]:
    """ρ(x_a, y) − sign_b·ρ(x_b, y) and its percentile bootstrap interval, resampling domains
    (the same indices for both correlations). Resamples where either correlation is undefined
    are dropped; with fewer than half left the interval is NaN."""
    ok = np.isfinite(x_a) & np.isfinite(x_b) & np.isfinite(y)
    x_a, x_b, y = x_a[ok], x_b[ok], y[ok]
    n = len(y)
    if n < 3:
        return math.nan, math.nan, math.nan
    point = _pearson_rows(x_a[None], y[None])[0] - sign_b * _pearson_rows(x_b[None], y[None])[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    d = _pearson_rows(x_a[idx], y[idx]) - sign_b * _pearson_rows(x_b[idx], y[idx])
    d = d[np.isfinite(d)]
    if len(d) < n_boot / 2:
        return float(point), math.nan, math.nan
    a = (1 - ci) / 2
    return float(point), float(np.quantile(d, a)), float(np.quantile(d, 1 - a))


def comparison_table(corr: pl.DataFrame, sts: pl.DataFrame, observed: pl.DataFrame,
                     primary: dict, *, n_boot: int = 2000, seed: int = 0, ci: float = 0.95,
                     k_extreme: int = 4) -> pl.DataFrame:
    """The panel on the primary analysis, one row per (run, predictor); see the module text.
    ``sts`` holds the predicted and the oracle rows (oracle columns null on predicted rows)."""
    if ("sae" in corr.columns and primary.get("sae") is None
            and corr.filter(pl.col("layer") == primary["layer"])["sae"].n_unique() > 1):
        raise ValueError("the primary analysis names no SAE and its layer has several: resolve "
                         "report.primary with the layers' config (config.primary.resolve_primary)")
    keys = {k: primary[k] for k in ("n_top", "layer", "sae", "metric", "protocol", "target")
            if k != "sae" or ("sae" in corr.columns and primary.get("sae") is not None)}
    rows = corr.filter(*[pl.col(k) == v for k, v in keys.items()])
    if rows.height == 0:
        return pl.DataFrame(schema=_schema(corr))
    run_keys = [c for c in ("method", "seed") if c in corr.columns]
    obs = observed.filter(pl.col("metric") == keys["metric"])
    out = []
    for run, g in (rows.partition_by(run_keys, as_dict=True, maintain_order=True).items()
                   if run_keys else [((), rows)]):
        kv = dict(zip(run_keys, run))
        prim = g.filter(pl.col("predictor") == primary["predictor"])
        x, y = _domain_values(sts, obs, keys, kv, k_extreme)
        if prim.height == 0 or x is None or len(y) < 3:
            continue
        records = []
        for r in g.to_dicts():
            name = r["predictor"]
            rec = {**kv, "predictor": name, "family": _family(name),
                   "post_training": name.endswith("_oracle"),
                   **{c: r[c] for c in ("n_domains", "pearson", "pearson_ci_low",
                                        "pearson_ci_high", "ci_method", "perm_p")},
                   "holm_p": r.get("holm_p", math.nan),
                   "share_at_least": math.nan}
            if name != primary["predictor"] and name in x and primary["predictor"] in x:
                sign = 1.0 if not np.isfinite(r["pearson"]) or r["pearson"] >= 0 else -1.0
                rec["diff"], rec["diff_low"], rec["diff_high"] = paired_diff(
                    x[primary["predictor"]], x[name], y, n_boot=n_boot, seed=seed, ci=ci,
                    sign_b=sign)
            records.append(rec)
        rho = {r["predictor"]: r["pearson"] for r in records}
        for col, (name, ref) in RAND_FORMULAS.items():
            if col in x and x[col].ndim == 2 and ref in rho:
                records.append(_random_row(kv, name, x[col], y, rho[ref], ci))
        baselines = [r for r in records if r["family"] not in NOT_BASELINES
                     and not r["post_training"] and np.isfinite(r["pearson"])]
        best = max(baselines, key=lambda r: abs(r["pearson"]))["predictor"] if baselines else None
        for r in records:
            r["best_baseline"] = r["predictor"] == best
        out += records
    df = pl.DataFrame(out, schema=_schema(corr))
    return df.with_columns(**{k: pl.lit(v) for k, v in keys.items()}, primary_predictor=pl.lit(
        primary["predictor"]))


def _schema(corr: pl.DataFrame) -> dict:
    s = {c: corr.schema[c] for c in ("method", "seed") if c in corr.columns}
    for c in COMPARISON_COLUMNS:
        s[c] = (pl.String if c in ("predictor", "family", "ci_method")
                else pl.Boolean if c in ("post_training", "best_baseline")
                else pl.Int64 if c == "n_domains" else pl.Float64)
    return s


def _domain_values(sts, obs, keys, run: dict, k_extreme):
    """Per-domain predictor values (incl. the random draws as (domains, draws) matrices) and the
    target, on the domains the primary protocol uses, aligned by domain."""
    sel = sts.filter(pl.col("layer") == keys["layer"], pl.col("n_top") == keys["n_top"],
                     *([pl.col("sae") == keys["sae"]] if "sae" in keys else []))
    site = ["model", "sft", *site_keys(sel), "n_top", "domain"]
    pred_rows = sel.filter(pl.col("method").is_null()) if "method" in sel.columns else sel
    oracle_rows = sel.filter(pl.col("method").is_not_null()) if "method" in sel.columns else None
    frames = []
    pred_cols = [c for c in predictor_columns(pred_rows) if not c.endswith("_oracle")]
    oracle_cols = [c for c in predictor_columns(sel) if c.endswith("_oracle")]
    for part, cols, is_oracle in ((pred_rows, pred_cols, False), (oracle_rows, oracle_cols, True)):
        if part is None or part.height == 0 or not cols:
            continue
        if "seed" in run and "seed" in part.columns:
            part = part.filter(pl.col("seed").eq_missing(run["seed"]))
        if is_oracle and "method" in run:
            part = part.filter(pl.col("method").eq_missing(run["method"]))
        rand = [c for c in RAND_FORMULAS if c in part.columns and not is_oracle]
        frames.append(part.select(*site, *cols, *rand))
    if not frames:
        return None, None
    wide = frames[0]
    for f in frames[1:]:
        wide = wide.join(f, on=site, how="left")
    o = obs
    for k, v in run.items():  # Δ given in the config has no method (null); no seed: any seed
        if k in o.columns:
            o = o.filter(pl.col(k).eq_missing(v) | (pl.col(k).is_null() if k == "seed"
                                                   else pl.lit(False)))
    joined, _ = pair_tables(wide.drop([c for c in RAND_FORMULAS if c in wide.columns]),
                            o.drop([k for k in run if k in o.columns]), k_extreme)
    if keys["protocol"] == "extremes":
        joined = joined.filter(pl.col("extreme"))
    joined = joined.join(wide.select("domain", *[c for c in RAND_FORMULAS if c in wide.columns]),
                         on="domain", how="left")
    delta = joined["delta"].to_numpy()
    y = np.abs(delta) if keys["target"] == "abs" else delta
    x = {c: joined[c].cast(pl.Float64).to_numpy() for c in predictor_columns(joined)}
    for c in RAND_FORMULAS:
        if c in joined.columns and joined[c].null_count() == 0:
            x[c] = np.array(joined[c].to_list(), dtype=np.float64)
    return x, y


def _random_row(run: dict, name: str, draws: np.ndarray, y: np.ndarray, r_ref: float,
                ci: float) -> dict:
    """ρ of each random N-set; ``share_at_least``: the share reaching ``r_ref``, the ρ of the STS
    formula on D_N that these draws replace."""
    rs = _pearson_rows(draws.T, np.broadcast_to(y, (draws.shape[1], len(y))))
    rs = rs[np.isfinite(rs)]
    a = (1 - ci) / 2
    return {**run, "predictor": name, "family": "random", "post_training": False,
            "n_domains": int(len(y)),
            "pearson": float(rs.mean()) if len(rs) else math.nan,
            "pearson_ci_low": float(np.quantile(rs, a)) if len(rs) else math.nan,
            "pearson_ci_high": float(np.quantile(rs, 1 - a)) if len(rs) else math.nan,
            "ci_method": f"mean and {a:.1%}-{1 - a:.1%} range over {len(rs)} random N-sets",
            "perm_p": math.nan, "holm_p": math.nan,
            "share_at_least": (float(np.mean(rs >= r_ref)) if len(rs) and np.isfinite(r_ref)
                               else math.nan),
            "diff": math.nan, "diff_low": math.nan, "diff_high": math.nan}


def ablation_table(corr: pl.DataFrame, primary: dict,
                   saes: pl.DataFrame | None = None) -> pl.DataFrame:
    """The primary predictor's ρ [CI] on the primary metric, protocol and target, by layer, SAE
    and N (and run): the paper's layer, SAE sparsity/width and N ablations, on this run's Δ.
    ``saes`` (the report's SAE table: layer, sae, width, k, l0) adds each SAE's width and
    sparsity (k of a TopK SAE, and the L0 measured on held-out tokens)."""
    keys = {k: primary[k] for k in ("predictor", "metric", "protocol", "target")}
    cols = [c for c in ("method", "seed") if c in corr.columns]
    site = site_keys(corr)
    out = (corr.filter(*[pl.col(k) == v for k, v in keys.items()])
           .select(*cols, *site, "n_top", "n_domains", "pearson", "pearson_ci_low",
                   "pearson_ci_high", "perm_p", "holm_p", "role"))
    if saes is not None and "sae" in out.columns and saes.height:
        figures = saes.select("layer", "sae", *[c for c in ("width", "k", "l0")
                                                if c in saes.columns])
        out = out.join(figures.with_columns(pl.col("layer").cast(out.schema["layer"])),
                       on=["layer", "sae"], how="left")
        lead = [*cols, *site, *[c for c in ("width", "k", "l0") if c in figures.columns]]
        out = out.select(*lead, *[c for c in out.columns if c not in lead])
    return out.sort([*cols, *site, "n_top"], nulls_last=True)
