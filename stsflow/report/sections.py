"""The report's sections, each a function from its tables to document blocks
(``stsflow.report.render``), in the order ``summary.write_report`` lays them out: warnings, the
pre-declared primary analysis, predicted and observed per domain, the fine-tuning methods, the
run-by-run prediction, the predictor panel and ablation, the feature cards, the noise in Δ, the
provenance, the exploratory analyses and their correlation table, ρ across seeds, the scatter
plots, the job's extra tables, the observed Δ and the STS scores."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl

from stsflow.analysis import correlation as st
from stsflow.report.figures import scatter_name
from stsflow.report.formatting import NA, finite, fmt, fmt_ci, fmt_rho
from stsflow.report.render import df_block, table_block
from stsflow.report.rows import filter_eq, headline_rows
from stsflow.report.verdicts import (
    declaration,
    interpret,
    primary_missing,
    primary_verdict,
    row_label,
    versus_sentence,
)


def warning_blocks(warnings: list[str]) -> list[tuple]:
    """What the reader must know before any result (a poor SAE, a declared model, an accepted
    hook), right under the title."""
    if not warnings:
        return []
    return [("h", 2, "Warnings"), ("ul", list(warnings))]


def primary_blocks(corr: pl.DataFrame, primary: dict | None, run_keys: list[str],
                    ci: float) -> list[tuple]:
    """The pre-declared primary analysis: one row and one verdict per seed of its method (the
    run keys ``run_keys``), with the mean ± sd over seeds; or, when no row is the declared one,
    why not."""
    blocks: list[tuple] = [("h", 2, "Primary analysis (pre-declared)")]
    if primary:
        blocks.append(("p", f"Declared in the config before the data: {declaration(primary)}. "
                            "Its permutation p is the one test of this report and is not "
                            "adjusted; the run's seeds are replicates of that one hypothesis. "
                            "Every other run (another fine-tuning method, a data mixture, RL, a "
                            "post-hoc pair) is a hypothesis of its own: its rows are exploratory, "
                            f"Holm-adjusted, below. Intervals: {ci:.0%} BCa bootstrap over "
                            "domains, with the Fisher z interval beside it. Noise ceiling: the ρ "
                            "that even a perfect predictor of the true Δ reaches on average "
                            "through the measurement noise of Δ; an expected value, not a bound, "
                            "so a ρ can exceed it by chance (marked)."))
    rows = (corr.filter(pl.col("role") == "primary").sort(["model", "sft", *run_keys],
                                                          nulls_last=True).to_dicts()
            if corr.height else [])
    if not rows:
        blocks.append(("p", primary_missing(corr, primary)))
        return blocks
    keys = ["model", "sft", *run_keys]
    blocks.append(table_block(
        [*keys, "n", f"Pearson ρ [{ci:.0%} BCa CI]", "Fisher z CI", "perm p (unadjusted)",
         "noise ceiling"],
        [[*(r[k] for k in keys), r["n_domains"], fmt_rho(r),
          fmt_ci(r["pearson_fisher_low"], r["pearson_fisher_high"]), fmt(r["perm_p"], ".2g"),
          ceiling_cell(r)] for r in rows]))
    blocks.append(("ul", [(", ".join(f"{k}={r[k]}" for k in run_keys if r[k] is not None)
                           + ": " if any(r[k] is not None for k in run_keys) else "")
                          + primary_verdict(r, ci) for r in rows]))
    if "seed" in corr.columns:
        for g in corr.filter(pl.col("role") == "primary").partition_by(
                [k for k in ("model", "sft", "method") if k in corr.columns],
                maintain_order=True):
            vals = g["pearson"].filter(g["pearson"].is_finite()).to_numpy()
            if vals.size > 1:
                who = ", ".join(f"{k}={g[k][0]}" for k in ("method",) if k in g.columns
                                and g[k][0] is not None)
                blocks.append(("p", f"Across {vals.size} seeds{' (' + who + ')' if who else ''}"
                                    f": ρ mean ± sd = {vals.mean():.2f} ± "
                                    f"{vals.std(ddof=1):.2f}, as the paper reports."))
    return blocks


def ceiling_cell(r: dict) -> str:
    """The noise ceiling, marked where ρ exceeds it (possible by chance: an expected value)."""
    return fmt(r.get("noise_ceiling"), ".2f") + (" (ρ above it: possible by chance)"
                                                 if r.get("above_ceiling") else "")


def bars_blocks(bars: pl.DataFrame, primary: dict | None, images: list[str]) -> list[tuple]:
    """The bar chart of the primary predictor and the observed Δ per domain, then the primary
    predictor's scatter plot (when written: ``images``)."""
    blocks: list[tuple] = [("h", 2, "Predicted and observed, domain by domain")]
    blocks.append(("p", f"Left: the primary predictor ({(primary or {}).get('predictor')}) per "
                        "domain, largest first. Right: the observed Δ of the primary metric "
                        "with its paired bootstrap CI over items (no CI for Δ given in the "
                        "config). One row per run; the scatter plot below shows the same "
                        f"pairs. {bars['domain'].n_unique()} domains have both."))
    blocks.append(("img", "bars.png", "Predicted score and observed Δ per domain"))
    own = (primary or {}).get("predictor")
    if own and scatter_name(own) in images:
        blocks.append(("img", scatter_name(own),
                       f"{own} vs |Δ| (the primary predictor), every seed"))
    return blocks


def methods_blocks(methods: pl.DataFrame, ci: float) -> list[tuple]:
    """The fine-tuning methods side by side (analysis.methods.method_table)."""
    target = next((t for t in methods["target"].to_list() if t), None)
    out = [("h", 2, "Fine-tuning methods side by side"),
           ("p", "Each fine-tuning run: its trainable parameters and fine-tuning time, Δ on the "
                 + (f"SFT set's target domain ({target}, sft.<name>.target) with its paired "
                    "bootstrap CI over items, " if target else
                    "SFT set's target domain (not set: give sft.<name>.target), ")
                 + f"and over the other {int(methods['n_others'].max() or 0)} domains: the mean "
                 f"Δ with a {ci:.0%} normal interval from the domains' paired standard errors, "
                 "the worst domain, the spread (sd) of Δ, and how many domains' CI lies below "
                 "or above zero (for an accuracy, hurt or helped; for NLL, where lower is "
                 "better, the other way round). sae_select-top-k<K> trains maps on the top-K "
                 "dimensions of the predicted shift; sae_select-random-k<K>, on K dimensions "
                 "drawn with the seed, is its control. <method>-mix_<strategy> adds replay "
                 "(the base model's answers to pool items of some domains, mixture:) split by "
                 "the strategy; its gain kept is its target Δ over the plain run's, only where "
                 "the plain run improved its target beyond its interval (for NLL, lower is "
                 "better): otherwise n/a, the reason below the table. A run shown as "
                 "A (= B) had B's replay items per domain, so B's training data: the workflow "
                 "trained and evaluated it once, as B, and its row is B's. Times are "
                 "wall-clock per job: compare "
                 "them within one run on one machine. A run trained before stsflow recorded "
                 "its trainable parameters shows —.")]
    def ci4(lo, hi):  # Δ of an accuracy is often below 0.01: four decimals
        return f"[{lo:+.4f}, {hi:+.4f}]" if finite(lo) and finite(hi) else NA

    rows, why = [], []  # why: each distinct reason a gain kept is n/a, numbered in the table
    for r in methods.sort(["metric", "method", "seed"]).iter_rows(named=True):
        if r.get("gain_kept_reason") and r["gain_kept_reason"] not in why:
            why.append(r["gain_kept_reason"])
        same = f" (= {r['same_data_as']})" if r.get("same_data_as") else ""
        rows.append([r["method"] + same, r["seed"], r["metric"],
                     f"{r['n_trainable']:,}" if r["n_trainable"] is not None else "—",
                     fmt(r["seconds"], ".0f"),
                     (f"{fmt(r['target_delta'], '+.4f')} "
                      f"{ci4(r['target_ci_low'], r['target_ci_high'])}"
                      if r["target_delta"] is not None else "—"),
                     (f"{fmt(r['others_mean'], '+.4f')} "
                      f"{ci4(r['others_ci_low'], r['others_ci_high'])}"
                      if r["others_mean"] is not None else "—"),
                     (f"{fmt(r['others_worst'], '+.4f')} ({r['worst_domain']})"
                      if r["others_worst"] is not None else "—"),
                     fmt(r["others_spread"], ".4f"),
                     (f"{r['n_below']} / {r['n_above']}" if r["n_below"] is not None
                      else "—"), (f"{NA} ({why.index(r['gain_kept_reason']) + 1})"
                                  if r.get("gain_kept_reason") else
                                  fmt(r["gain_kept"], ".2f"))])
    out.append(table_block(["method", "seed", "metric", "trainable params", "time (s)",
                             f"Δ {target or 'target'} [{ci:.0%} CI]",
                             f"mean Δ other domains [{ci:.0%} CI]", "lowest Δ (domain)",
                             "spread of Δ", "CI below / above 0", "gain kept"], rows))
    if why:
        out.append(("ul", [f"gain kept n/a ({i}): {w}" for i, w in enumerate(why, 1)]))
    return out


def by_run_blocks(by_run: pl.DataFrame, ci: float) -> list[tuple]:
    """The ICL prediction and the true shift, run by run (analysis.methods.prediction_by_run):
    the paper's RL comparison, for SFT, RL and post-hoc runs alike."""
    def rho(r, kind):
        return fmt_rho({"pearson": r[kind], "pearson_ci_low": r[f"{kind}_ci_low"],
                         "pearson_ci_high": r[f"{kind}_ci_high"]})

    def holm(r, kind):
        return ("primary: not adjusted" if r[f"{kind}_role"] == "primary"
                else fmt(r[f"{kind}_holm_p"], ".2g"))

    def over(r):
        if r["overlap"] is None or not finite(r["overlap"]):
            return NA
        eff = r.get("n_effective")
        return (f"{fmt(r['overlap'], '.2f')} (chance {fmt(r['overlap_chance'], '.2f')}, p "
                f"{fmt(r['overlap_p'], '.2g')}"
                + (f"; only {eff} dims moved" if eff is not None and r["n_top"] is not None
                   and eff < r["n_top"] else "") + ")")

    pred = by_run["predictor"][0]
    return [("h", 2, "Prediction and true shift, run by run"),
            ("p", f"At the primary analysis' layer, SAE, N and target, for each tuned run "
                  f"(SFT, RL such as grpo, post-hoc pairs) and each evaluated metric (also "
                  f"by_run.parquet): Pearson ρ of {pred} computed on the ICL-predicted "
                  f"dimensions with the run's |Δ| (or Δ, as the primary target), beside ρ of "
                  f"{pred}_oracle, the same score on the run's true shifted dimensions (needs "
                  f"the tuned model), with {ci:.0%} BCa CIs over domains, the permutation p "
                  "(unadjusted) and the Holm-adjusted p of each row: only the primary run's ICL "
                  "row at the primary metric is the pre-declared test, every other row is "
                  "exploratory. Overlap: |D_N ∩ D_N^true| / N of the two dimension sets, with "
                  "the overlap expected by chance among the dimensions the prediction moves and "
                  "its exact permutation p (unadjusted; overlap table below). The paper found "
                  "ICL predicts RL's shifts poorly and the true dimensions restore the "
                  "correlation."),
            table_block(["run", "seed", "metric", "n", "ρ ICL [CI]", "perm p (unadjusted)",
                          "Holm p (adjusted)", "ρ true shift [CI]", "perm p (unadjusted)",
                          "Holm p (adjusted)", "overlap (chance, p unadjusted)"],
                         [[r["method"], r["seed"], r["metric"], r["n_domains"], rho(r, "icl"),
                           fmt(r["icl_perm_p"], ".2g"), holm(r, "icl"), rho(r, "true"),
                           fmt(r["true_perm_p"], ".2g"), holm(r, "true"), over(r)]
                          for r in by_run.iter_rows(named=True)])]


def _is_primary(r: dict, primary: dict | None) -> bool:
    """A panel row that is the pre-declared test (its p is its own, not adjusted)."""
    p = primary or {}
    return (r["predictor"] == p.get("predictor")
            and ("method" not in p or r.get("method") == p["method"]))


def comparison_blocks(cmp: pl.DataFrame, ablation: pl.DataFrame, primary: dict | None,
                       ci: float) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Predictor panel: does STS beat the cheap predictors here?")]
    blocks.append(("p", "Every predictor on the primary analysis's domains and Δ (its N, layer, "
                        "metric, protocol and target). Intervals: BCa bootstrap over domains; "
                        "for the random N-sets of SAE dimensions, the mean and range of ρ over "
                        "draws, and the share of draws reaching the ρ of the same STS formula "
                        "on D_N. "
                        "Δρ: primary minus the baseline (oriented by the sign of its own ρ, "
                        f"which favours the baseline), {ci:.0%} paired percentile bootstrap over "
                        "domains. Post-training rows need the fine-tuned model and are not "
                        "baselines. Each row's permutation p is given unadjusted and "
                        "Holm-adjusted within its family (correlations.parquet: the primary "
                        "row's own p is not adjusted); nothing is adjusted across the panel as a "
                        "whole, nor are the Δρ intervals. Random N-sets are drawn among the "
                        "live SAE dimensions (those that fire on the SFT queries), as many as "
                        "D_N holds."))
    if cmp.height == 0:
        blocks.append(("p", "No correlation row matches the primary analysis: no panel."))
    else:
        runs = [c for c in ("method", "seed") if c in cmp.columns]
        blocks.append(("img", "forest.png", "Forest plot: predictors × ρ [CI], primary analysis"))
        blocks.append(table_block(
            [*runs, "predictor", "family", "n", f"Pearson ρ [{ci:.0%} CI]",
             "perm p (unadjusted)", "Holm p (adjusted)",
             "share of random draws ≥ STS on D_N", f"Δρ vs primary [{ci:.0%} CI]"],
            [[*(r[k] for k in runs),
              r["predictor"] + (" (post-training)" if r["post_training"] else "")
              + (" [best baseline]" if r["best_baseline"] else ""), r["family"],
              r["n_domains"], fmt_rho(r), fmt(r["perm_p"], ".2g"),
              ("primary: not adjusted" if _is_primary(r, primary) else fmt(r["holm_p"], ".2g")),
              fmt(r["share_at_least"], ".2f"),
              (f"{fmt(r['diff'], '.2f')} {fmt_ci(r['diff_low'], r['diff_high'])}"
               if finite(r["diff"]) else NA)] for r in cmp.to_dicts()]))
        blocks.append(("ul", [versus_sentence(g, primary, ci) for g in (
            cmp.partition_by(runs, maintain_order=True) if runs else [cmp])]))
    blocks.append(("h", 2, "Ablation: layer, SAE and N"))
    blocks.append(("p", f"The primary predictor ({(primary or {}).get('predictor')}) on the "
                        "primary metric, protocol and target, by layer, SAE (its width, its k "
                        "when TopK and its L0 measured on held-out tokens: the sparsity "
                        "ablation) and N; every row but the primary one is exploratory (Holm p "
                        "within its family)."))
    blocks.append(df_block(ablation.rename({"perm_p": "perm p (unadjusted)",
                                            "holm_p": "Holm p (adjusted)"}, strict=False)))
    return blocks


def cards_blocks(cards: pl.DataFrame) -> list[tuple]:
    """The feature cards: the top shifted SAE dimensions of each prediction and run."""
    blocks: list[tuple] = [("h", 2, "Feature cards: what moved")]
    n_cards = int(cards["rank"].max()) if cards.height else 0
    blocks.append(("p", f"The top {n_cards} shifted SAE dimensions (cards.n_top) of each ICL "
                        "prediction (set 'predicted') and of each fine-tuning run "
                        "('true-<method>'), one row each; 'also in' marks the overlap of "
                        f"the sets' top {n_cards} (the overlap table below uses the analysis' "
                        "N). Frequency and mean over the counted query tokens (every "
                        "corpus's under 'contexts'); contexts: the top-activating "
                        "tokens of the SFT set and of each domain (marked), with their "
                        "neighbours; promotes / suppresses: the logit lens of the decoder "
                        "direction (final norm, then the LM head). The dimension links to "
                        "Neuronpedia where the SAE is hosted there. Type in the box to "
                        "filter; click a column to sort (the table reads without "
                        "JavaScript too). `stsflow cards` prints a card in a terminal."))
    blocks.append(("cards", cards))
    return blocks


def noise_blocks(observed: pl.DataFrame, corr: pl.DataFrame, extra: list[str]) -> list[tuple]:
    """Per run and metric: how noisy Δ is, how many domains move beyond their noise, and the
    ceiling that noise puts on ρ (target |Δ|, all domains)."""
    blocks: list[tuple] = [("h", 2, "Noise in Δ")]
    blocks.append(("p", "SE: paired standard error of Δ over items (sd of per-item differences / "
                        "√n), per domain in the Observed Δ table below. 'Δ CI excludes 0' counts "
                        "the domains whose paired bootstrap CI of Δ lies on one side of 0. Noise "
                        "ceiling: mean over simulations of corr(|Δ|, |Δ + ε|), ε ~ N(0, SE²) — "
                        "the ρ with |Δ| a perfect predictor reaches on average through the "
                        "noise (an expected value: an estimate can exceed it by chance). Δ given in the config have no "
                        "per-item data: SE and ceiling n/a."))
    keys = ["model", "sft", "metric", *extra]
    has = {c: c in observed.columns for c in ("delta_se", "ci_low", "ci_high")}
    rows = []
    for g in observed.partition_by(keys, maintain_order=True):
        kv = {k: g[k][0] for k in keys}
        se = (g["delta_se"].cast(pl.Float64).fill_null(math.nan).to_numpy() if has["delta_se"]
              else np.full(g.height, math.nan))
        if has["ci_low"] and has["ci_high"]:
            lo = g["ci_low"].cast(pl.Float64).fill_null(math.nan).to_numpy()
            hi = g["ci_high"].cast(pl.Float64).fill_null(math.nan).to_numpy()
            known = np.isfinite(lo) & np.isfinite(hi)
            excl = (f"{int(((lo > 0) | (hi < 0))[known].sum())} of {int(known.sum())}"
                    if known.any() else NA)
        else:
            excl = NA
        c = filter_eq(corr, {**kv, "target": "abs", "protocol": "all"}) if corr.height else corr
        ceiling = c["noise_ceiling"][0] if c.height else math.nan
        rows.append([*kv.values(), g.height,
                     fmt(float(np.mean(se)), ".3g") if np.isfinite(se).all() else NA,
                     fmt(float(np.max(se)), ".3g") if np.isfinite(se).all() else NA,
                     excl, fmt(ceiling, ".2f")])
    blocks.append(table_block([*keys, "domains", "mean SE", "max SE", "Δ CI excludes 0",
                                "noise ceiling (|Δ|, all)"], rows))
    return blocks


def provenance_blocks(provenance: dict) -> list[tuple]:
    return [("h", 2, "Provenance"), table_block(["key", "value"], [
        [str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)]
        for k, v in provenance.items()])]


def exploratory_blocks(corr: pl.DataFrame, predictors: list[str], extra: list[str],
                       metric: str | None, ci: float) -> list[tuple]:
    """Every row but the primary one: a sentence per row of the plotted metric, then the table
    of all correlations with |Δ|."""
    head_keys = ["model", "sft", "predictor", *st.site_keys(corr), "n_top", "protocol", "metric",
                 *extra]
    abs_rows = headline_rows(corr, predictors, head_keys)
    blocks: list[tuple] = [("h", 2, "Exploratory analyses")]
    blocks.append(("p", "Every row other than the primary one is exploratory, another "
                        "fine-tuning method's primary predictor included: its p-value is the "
                        "permutation p Holm-adjusted over its family, all exploratory rows of one "
                        "(model, sft, target, method, seed) and predictor family: every "
                        "predictor, layer, N and metric. The table gives the unadjusted "
                        "permutation p beside the adjusted one; sentences quote the adjusted. "
                        "Extreme-groups rows (the 4 largest and 4 smallest |Δ|) select domains on "
                        "Δ: their intervals are descriptive and they carry no p-value. Intervals "
                        f"are {ci:.0%} BCa bootstrap over domains; Fisher z beside them. "
                        f"Sentences below: metric {metric}."))
    blocks.append(("ul", [
        f"{row_label(r, extra)} [{r['role']}]: {interpret(r, ci)}"
        for r in abs_rows if r["metric"] == metric]))

    blocks.append(("h", 2, "Correlation with |Δ|"))
    blocks.append(table_block(
        [*head_keys, "role", "n", f"Pearson ρ [{ci:.0%} CI]", "CI method", "Fisher z CI",
         "noise ceiling", "Spearman", "perm p (unadjusted)", "Holm p (adjusted)"],
        [[*(r[k] for k in head_keys), r["role"], r["n_domains"], fmt_rho(r),
          "descriptive (domains selected on Δ)" if r["role"] == "descriptive" else r["ci_method"],
          fmt_ci(r["pearson_fisher_low"], r["pearson_fisher_high"]),
          ceiling_cell(r), fmt(r["spearman"], ".2f"), fmt(r["perm_p"], ".2g"),
          (fmt(r["holm_p"], ".2g") + " (primary: own p)" if r["role"] == "primary"
           else fmt(r["holm_p"], ".2g"))] for r in abs_rows]))
    return blocks


def seed_blocks(corr: pl.DataFrame) -> list[tuple]:
    """Mean ± sd of ρ over seeds (|Δ|), as the paper reports; nothing without seeds."""
    if "seed" not in corr.columns:
        return []
    summ = st.seed_summary(corr.filter(pl.col("target") == "abs"))
    keys = [c for c in summ.columns if c not in ("target", "ci_method", "n_seeds",
                                                 "pearson_mean", "pearson_std")]
    return [("h", 2, "Pearson ρ across seeds (|Δ|)"),
            ("p", "Mean ± sd (ddof = 1) of the per-seed ρ, as the paper reports; the "
                  "scatter plots show every seed."),
            table_block([*keys, "seeds", "ρ mean ± sd"], [
                [*(r[k] for k in keys), r["n_seeds"],
                 f"{fmt(r['pearson_mean'], '.2f')} ± {fmt(r['pearson_std'], '.2f')}"]
                for r in summ.to_dicts()])]


def scatter_blocks(images: list[str], primary: dict | None, metric: str | None) -> list[tuple]:
    """Every predictor's scatter plot but the primary one's, which leads the report."""
    own = (primary or {}).get("predictor")
    lead = scatter_name(own) if own else None
    scatters = [n for n in images if n.startswith("scatter_") and n != lead]
    if not scatters:
        return []
    return [("h", 2, "Scatter plots"),
            *(("img", name, name[len("scatter_"):-len(".png")]
               + f" vs |Δ|, metric {metric}, one row per layer and seed") for name in scatters)]


def table_blocks(tables: list[tuple[str, pl.DataFrame]]) -> list[tuple]:
    """The tables the job adds (SAE quality, overlap, coverage), each under its heading."""
    return [b for heading, table in tables for b in (("h", 2, heading), df_block(table))]


def observed_blocks(observed: pl.DataFrame, extra: list[str]) -> list[tuple]:
    """Every observed Δ with its noise, the largest |Δ| first within each (model, sft, metric,
    run)."""
    obs_keys = ["model", "sft", "metric", *extra]
    noise_cols = [c for c in ("delta_se", "ci_low", "ci_high") if c in observed.columns]
    obs_tab = (observed.select([*obs_keys, "domain", pl.col("delta").cast(pl.Float64),
                                *[pl.col(c).cast(pl.Float64) for c in noise_cols]])
               .with_columns(abs_delta=pl.col("delta").abs())
               .sort([*obs_keys, "abs_delta", "domain"], descending=[False] * len(obs_keys)
                     + [True, False], nulls_last=True))
    return [("h", 2, "Observed Δ"), df_block(obs_tab)]


def sts_blocks(sts: pl.DataFrame) -> list[tuple]:
    sort_cols = [c for c in ("model", "sft", "layer", "sae", "n_top", "domain")
                 if c in sts.columns]
    return [("h", 2, "STS scores"), df_block(sts.sort(sort_cols) if sort_cols else sts)]
