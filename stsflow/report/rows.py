"""Which rows each part of the report shows: one predictor's rows of the stacked STS table, the
primary predictor's scores beside the observed Δ (the bar chart), the metric the plots show, and
the correlation rows in reading order."""

from __future__ import annotations

import math

import polars as pl

from stsflow.analysis import correlation as st


def filter_eq(df: pl.DataFrame, values: dict) -> pl.DataFrame:
    """The rows equal to ``values`` in every column the table has (a null matches a null); the
    columns it lacks are not keys of its rows."""
    for c, v in values.items():
        if c in df.columns:
            df = df.filter(pl.col(c).eq_missing(pl.lit(v, dtype=df.schema[c])))
    return df


def plot_metric(observed: pl.DataFrame, primary: dict | None) -> str | None:
    """The metric the scatter plots show: the primary one when the data has it, else the first
    metric in table order."""
    if observed.height == 0:
        return None
    metrics = observed["metric"].unique(maintain_order=True).to_list()
    want = (primary or {}).get("metric")
    return want if want in metrics else metrics[0]


def predictor_rows(sts: pl.DataFrame, predictor: str) -> pl.DataFrame:
    """The rows of one predictor in the report's STS table (the STS and oracle tables stacked),
    without the other predictors' columns and without the run keys its rows leave null: an ICL
    predictor's rows have no method, and must not be paired by method (the oracle rows' key)."""
    others = st.predictor_names() - {predictor}
    rows = sts.filter(pl.col(predictor).is_not_null())
    unused = [c for c in st.EXTRA_KEYS if c in rows.columns
              and rows[c].null_count() == rows.height]
    return rows.select([c for c in rows.columns if c not in others and c not in unused])


def bars_data(sts: pl.DataFrame, observed: pl.DataFrame, primary: dict | None) -> pl.DataFrame:
    """The primary predictor's score per domain (its layer, SAE and N) beside the observed Δ of
    the primary metric with its CI, one row per (run, domain): the rows the bar chart shows.
    A run is the (method, seed) both tables share; Δ given in the config apply to every run."""
    p = primary or {}
    name = p.get("predictor")
    empty = pl.DataFrame(schema={"domain": pl.String, "score": pl.Float64, "delta": pl.Float64,
                                 "ci_low": pl.Float64, "ci_high": pl.Float64})
    if not name or name not in sts.columns or observed.height == 0:
        return empty
    site = filter_eq(predictor_rows(sts, name),
                      {k: p.get(k) for k in ("layer", "sae", "n_top") if p.get(k) is not None})
    obs = observed.filter(pl.col("metric") == p.get("metric")) if p.get("metric") else observed
    carried = [c for c in st.EXTRA_KEYS if c in site.columns]
    obs_keys = [c for c in st.EXTRA_KEYS if c in obs.columns]
    # the other run keys stay apart: an ICL seed's score goes with each method's Δ of that seed
    runs = [c for c in st.EXTRA_KEYS if c in carried or c in obs_keys]
    ci = [pl.col(c).cast(pl.Float64) if c in obs.columns else pl.lit(math.nan).alias(c)
          for c in ("ci_low", "ci_high")]
    left = site.select(["model", "sft", *carried, "domain",
                        pl.col(name).cast(pl.Float64).alias("score")])
    right = obs.select(["model", "sft", *obs_keys, "domain", pl.col("delta").cast(pl.Float64),
                        *ci])
    # Δ given in the config carry no run keys (null when stacked on the workflow's own): they
    # apply to every run of the predictor; the workflow's pair by the keys both sides carry
    given = (pl.all_horizontal(pl.col(c).is_null() for c in obs_keys) if obs_keys
             else pl.lit(True))
    parts = [left.join(right.filter(given).drop(obs_keys), on=["model", "sft", "domain"],
                       how="inner")]
    shared = [c for c in carried if c in obs_keys]
    if obs_keys:
        parts.append(left.join(right.filter(~given), on=["model", "sft", *shared, "domain"],
                               how="inner", nulls_equal=True))
    data = pl.concat(parts, how="diagonal_relaxed")
    return data.sort([*runs, "score"], descending=[False] * len(runs) + [True], nulls_last=True)


def headline_rows(corr: pl.DataFrame, predictors: list[str], keys: list[str]) -> list[dict]:
    """target=abs rows ordered predictor-major (in STS column order), then layer, n_top, protocol
    (all before extremes), metric, method, seed, so each predictor's results read as one block."""
    if corr.height == 0 or "target" not in corr.columns:
        return []
    order = {v: i for i, v in enumerate(predictors)}
    prot = {p: i for i, p in enumerate(st.PROTOCOLS)}
    df = corr.filter(pl.col("target") == "abs").with_columns(
        _v=pl.col("predictor").replace_strict(order, default=len(order), return_dtype=pl.Int64),
        _p=pl.col("protocol").replace_strict(prot, default=len(prot), return_dtype=pl.Int64))
    site = st.site_keys(df)
    by = ["model", "sft", "_v", "predictor", *site, "n_top", "_p", "protocol",
          *[k for k in keys if k not in ("model", "sft", "predictor", *site, "n_top",
                                         "protocol")]]
    return df.sort(by, nulls_last=True, maintain_order=True).drop("_v", "_p").to_dicts()
