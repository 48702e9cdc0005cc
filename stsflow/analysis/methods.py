"""Fine-tuning methods side by side (LoRA, full, sae_select top-K and its random control): what
each trained, what it cost and what it changed, from the observed table and the runs' histories.

Per (method, seed, metric):

* ``n_trainable``, ``seconds`` (the run's fine-tuning wall time) from its history;
* ``target_delta`` [``target_ci_low``, ``target_ci_high``]: Δ on the SFT set's target domain
  (``sft.<name>.target``: the gain fine-tuning is for), with its paired bootstrap CI over items;
* ``others_mean`` [``others_ci_low``, ``others_ci_high``]: the mean Δ over every other domain,
  with a normal interval from the domains' paired standard errors (independent items:
  SE = √(Σ SE_d²) / n_domains), so it is the interval of this mean for these domains' items;
* ``others_worst`` (the lowest Δ, and its domain: the worst for an accuracy) and ``others_spread`` (the sd of the other
  domains' Δ, ddof 1); ``n_below`` / ``n_above``: domains whose CI lies below / above 0 (hurt
  and helped for an accuracy; the other way round for NLL, where lower is better: these
  columns count signs of Δ, not better or worse);
* ``gain_kept`` (data-mixture runs, ``<method>-mix_<strategy>``): the run's target Δ over that
  of the same method's plain run (same seed and metric): the share of the SFT gain the replay
  left. Only where there is a gain to keep: the plain run improved its target beyond its
  interval, in the metric's direction (the metric registry's: its CI above 0 for an accuracy,
  below 0 for NLL). Otherwise null, and ``gain_kept_reason`` says why in words (no target, no
  plain run, an unknown direction, or the plain run's Δ and interval that show no gain); a
  ratio of a loss, or of a change within the noise, would read as a share of a gain it is not;
* ``same_data_as``: for a data-mixture run whose replay items per domain another run of its
  method and seed has (the same training data: stsflow.mixture.identical), that run, which the
  workflow trained and evaluated in its place: the row repeats that run's (``seconds`` null:
  it did not train), with its own gain kept. Null for every run that trained.

Torch-free (the report job runs without it)."""

from __future__ import annotations

import math
from statistics import NormalDist

import polars as pl

COLUMNS = ("method", "seed", "metric", "n_trainable", "seconds", "target", "target_delta",
           "target_ci_low", "target_ci_high", "n_others", "others_mean", "others_ci_low",
           "others_ci_high", "others_worst", "worst_domain", "others_spread", "n_below",
           "n_above", "gain_kept", "gain_kept_reason", "same_data_as")



def gain_kept(delta: float | None, plain: dict | None, metric: str,
              target: str | None) -> tuple[float | None, str | None]:
    """(gain kept, None) for a mixture run whose target Δ is ``delta``, or (None, the reason).
    ``plain``: the plain run's row (``method``, ``target_delta``, ``target_ci_low``,
    ``target_ci_high``), None when the table has none."""
    if target is None:
        return None, "no target domain (sft.<name>.target) to keep a gain on"
    if plain is None or plain["target_delta"] is None:
        return None, "no plain run of the same method and seed to compare with"
    if delta is None:
        return None, f"no Δ of this run on {target}"
    from stsflow.evaluate.registry import higher_is_better

    higher = higher_is_better(metric)
    if higher is None:
        return None, f"the direction of metric {metric!r} is not known"
    lo, hi = plain["target_ci_low"], plain["target_ci_high"]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return None, f"the plain run's Δ on {target} has no interval"
    if (lo > 0) if higher else (hi < 0):
        return delta / plain["target_delta"], None
    return None, (f"the plain run {plain['method']} did not improve {target} beyond its interval "
                  f"(Δ {metric} {plain['target_delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]; "
                  f"{'higher' if higher else 'lower'} is better): there is no gain to keep")


def method_table(observed: pl.DataFrame, runs: dict[tuple[str, int], dict],
                 target: str | None, ci: float = 0.95,
                 same: dict[tuple[str, int], str] | None = None) -> pl.DataFrame:
    """One row per (method, seed, metric) of ``observed`` (the observed table of one model and
    SFT set); ``runs`` maps (method, seed) -> the run's history metadata (``n_trainable``,
    ``seconds``; missing keys give nulls); ``same`` maps a run that did not train, its data
    being another's, to that run (analysis.allocations.trained_as): it gets that run's rows."""
    z = NormalDist().inv_cdf(0.5 + ci / 2)
    rows = []
    for (method, seed, metric), g in observed.group_by(["method", "seed", "metric"],
                                                      maintain_order=True):
        meta = runs.get((method, int(seed)), {})
        own = g.filter(pl.col("domain") == target) if target else g.clear()
        others = g.filter(pl.col("domain") != target) if target else g
        row = {"method": method, "seed": int(seed), "metric": metric,
               "n_trainable": meta.get("n_trainable"), "seconds": meta.get("seconds"),
               "target": target, "target_delta": None, "target_ci_low": None,
               "target_ci_high": None, "n_others": others.height}
        if own.height:
            r = own.row(0, named=True)
            row.update(target_delta=r["delta"], target_ci_low=r["ci_low"],
                       target_ci_high=r["ci_high"])
        if others.height:
            d = others["delta"].to_numpy()
            mean = float(d.mean())
            se = math.sqrt(float((others["delta_se"].to_numpy() ** 2).sum())) / len(d)
            worst = others.sort(["delta", "domain"]).row(0, named=True)
            row.update(others_mean=mean, others_ci_low=mean - z * se,
                       others_ci_high=mean + z * se, others_worst=worst["delta"],
                       worst_domain=worst["domain"],
                       others_spread=float(d.std(ddof=1)) if len(d) > 1 else None,
                       n_below=int((others["ci_high"] < 0).sum()),
                       n_above=int((others["ci_low"] > 0).sum()))
        rows.append(row)
    for (method, seed), trained in sorted((same or {}).items()):
        rows += [dict(r, method=method, seconds=None, same_data_as=trained) for r in rows
                 if (r["method"], r["seed"]) == (trained, seed) and not r.get("same_data_as")]
    from stsflow.mode import RunMethod

    plain = {(r["method"], r["seed"], r["metric"]): r for r in rows}
    for r in rows:
        run = RunMethod.parse(r["method"])
        if run.mix is not None:
            r["gain_kept"], r["gain_kept_reason"] = gain_kept(
                r["target_delta"], plain.get((str(run.unmixed), r["seed"], r["metric"])),
                r["metric"], target)
    schema = {"method": pl.Utf8, "seed": pl.Int64, "metric": pl.Utf8, "n_trainable": pl.Int64,
              "seconds": pl.Float64, "target": pl.Utf8, "target_delta": pl.Float64,
              "target_ci_low": pl.Float64, "target_ci_high": pl.Float64, "n_others": pl.Int64,
              "others_mean": pl.Float64, "others_ci_low": pl.Float64,
              "others_ci_high": pl.Float64, "others_worst": pl.Float64, "worst_domain": pl.Utf8,
              "others_spread": pl.Float64, "n_below": pl.Int64, "n_above": pl.Int64,
              "gain_kept": pl.Float64, "gain_kept_reason": pl.Utf8, "same_data_as": pl.Utf8}
    return pl.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], schema=schema,
                        orient="row")


BY_RUN_COLUMNS = ("method", "seed", "metric", "predictor", "n_top", "n_domains",
                  "icl", "icl_ci_low", "icl_ci_high", "icl_perm_p", "icl_holm_p", "icl_role",
                  "true", "true_ci_low", "true_ci_high", "true_perm_p", "true_holm_p", "true_role",
                  "overlap", "overlap_chance", "overlap_p", "n_effective")
# the overlap table's columns each run's row carries (scores.shift.overlap_stats)
_OVERLAP = ("overlap", "overlap_chance", "overlap_p", "n_effective")


def prediction_by_run(corr: pl.DataFrame, overlap: pl.DataFrame | None,
                      primary: dict | None) -> pl.DataFrame:
    """The paper's RL comparison, for every tuned run (SFT, RL, post-hoc pairs) and metric: at
    the primary analysis' site (layer, SAE, N, target, protocol), Pearson ρ of the ICL
    prediction's STS (the primary predictor; sts_icl when it has no true-shift twin, as a
    baseline) with the run's observed change [BCa CI, permutation p] beside ρ of the true
    shift's STS (the same predictor's ``_oracle`` row), each with its unadjusted permutation p,
    its Holm-adjusted p and its role (only the primary run's ICL row at the primary metric is
    the primary test; every other is exploratory), and the overlap |D_N ∩ D_N^true| / N of the
    two dimension sets with its chance level, exact permutation p (unadjusted) and the number of
    real dimensions in the smaller set (``n_effective``). Empty without a primary analysis or
    tuned runs."""
    schema = {c: (pl.String if c in ("method", "metric", "predictor", "icl_role", "true_role")
                  else pl.Int64 if c in ("seed", "n_top", "n_domains", "n_effective")
                  else pl.Float64)
              for c in BY_RUN_COLUMNS}
    if not primary or "method" not in corr.columns:
        return pl.DataFrame(schema=schema)
    pred = primary["predictor"].removesuffix("_oracle")
    preds = set(corr["predictor"])
    if (pred not in preds or f"{pred}_oracle" not in preds) and "sts_icl_oracle" in preds:
        # a primary without both an ICL and a true-shift row (a baseline; before_after, which
        # exists only after training): the paper's score
        pred = "sts_icl"
    # every metric, each its own row: the primary's metric is one of them
    site = {k: primary[k] for k in ("layer", "sae", "n_top", "target", "protocol")
            if primary.get(k) is not None and k in corr.columns}
    at = corr.filter(pl.all_horizontal([pl.col(k) == v for k, v in site.items()])
                     if site else pl.lit(True))
    rows = []
    runs = at.filter(pl.col("method").is_not_null()).select("method", "seed", "metric").unique(
        maintain_order=True)
    for method, seed, metric in runs.iter_rows():
        row = {"method": method, "seed": int(seed), "metric": metric, "predictor": pred,
               "n_top": primary.get("n_top")}
        for kind, name in (("icl", pred), ("true", f"{pred}_oracle")):
            r = at.filter((pl.col("predictor") == name) & (pl.col("method") == method)
                          & (pl.col("seed") == seed) & (pl.col("metric") == metric))
            r = r.row(0, named=True) if r.height else {}
            row[kind] = r.get("pearson")
            row[f"{kind}_ci_low"], row[f"{kind}_ci_high"] = (r.get("pearson_ci_low"),
                                                              r.get("pearson_ci_high"))
            row[f"{kind}_perm_p"] = r.get("perm_p")
            row[f"{kind}_holm_p"], row[f"{kind}_role"] = r.get("holm_p"), r.get("role")
            row["n_domains"] = row.get("n_domains") or r.get("n_domains")
        if overlap is not None and overlap.height:
            o = overlap.filter((pl.col("method") == method) & (pl.col("seed") == seed))
            for k in ("layer", "sae", "n_top"):
                if k in site and k in o.columns:
                    o = o.filter(pl.col(k) == site[k])
            if o.height:  # an overlap table written before the chance level lacks it
                row.update({c: o[c][0] for c in _OVERLAP if c in o.columns})
        rows.append(row)
    return (pl.DataFrame([{c: r.get(c) for c in BY_RUN_COLUMNS} for r in rows], schema=schema)
            if rows else pl.DataFrame(schema=schema))
