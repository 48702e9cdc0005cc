"""What the numbers say, in words: the verdict of the pre-declared primary analysis, one
sentence per exploratory row, the predictor panel's comparison with the best baseline, and the
statement of a declared analysis the data lacks. Each sentence claims only what its interval and
p-value support (the statistical choices: ``stsflow.analysis.correlation``)."""

from __future__ import annotations

import math

import polars as pl

from stsflow.config.primary import PRIMARY_KEYS
from stsflow.report.formatting import finite, fmt, fmt_ci


def _ceiling_txt(row: dict) -> str:
    c = row.get("noise_ceiling")
    if not finite(c):
        return "; noise ceiling n/a (no per-item data for Δ)"
    rho = row.get("pearson")
    above = (", and ρ is above it: possible by chance, as the ceiling is an expected value, not "
             "a bound" if finite(rho) and rho > c else "")
    return f"; noise ceiling {c:.2f}{above}"


def _direction(row: dict, sign: float) -> str:
    """What the sign of ρ says, in the words of the row's target: |Δ| is what STS predicts
    (higher STS, larger change), a signed Δ only describes which way the metric moved (the sign
    is not predicted: docs/method.md#what-sts-predicts)."""
    if row.get("target", "abs") == "abs":
        return ("a higher score goes with a larger |Δ|, as predicted" if sign > 0 else
                "a higher score goes with a smaller |Δ|, opposite to the prediction")
    from stsflow.evaluate.registry import higher_is_better

    metric = row.get("metric")
    better = higher_is_better(metric) if metric else None
    moved = "higher" if sign > 0 else "lower"
    gain = (sign > 0) == better if better is not None else None
    what = ("" if gain is None else
            " (more gain or less loss)" if gain else " (more loss or less gain)")
    return (f"a higher score goes with a {moved} signed Δ {metric or ''}{what}; STS predicts the "
            "size of a change, not its sign, so this describes the data rather than tests the "
            "method")


def p_label(row: dict) -> tuple[str, float | None]:
    """(name, value) of the p-value a row's sentence quotes, saying whether it is adjusted: the
    primary row's own permutation p (unadjusted, pre-declared), an exploratory row's
    Holm-adjusted one."""
    if row.get("role") == "primary":
        return "permutation p (unadjusted, pre-declared)", row.get("perm_p")
    if "holm_p" in row:
        return "Holm-adjusted p", row.get("holm_p")
    return "permutation p (unadjusted)", row.get("perm_p")


def interpret(row: dict, ci: float = 0.95) -> str:
    """One honest sentence from a correlation row: what the numbers support, nothing more.
    Exploratory rows quote their Holm-adjusted p, descriptive (extremes) rows no p at all."""
    n = row["n_domains"]
    rho, lo, hi = row["pearson"], row["pearson_ci_low"], row["pearson_ci_high"]
    descriptive = row.get("protocol") == "extremes"
    caveat = (" (descriptive: extreme-groups selection on Δ, which inflates ρ; no test)"
              if descriptive else "")
    if rho is None or not math.isfinite(rho):
        return (f"ρ undefined over {n} domains (fewer than 3 domains or a constant variable)"
                f"{caveat}.")
    p_name, p = p_label(row)
    perm_txt = "" if descriptive or not finite(p) else f", {p_name} = {p:.2g}"
    ceil = _ceiling_txt(row) if "noise_ceiling" in row else ""
    if not (finite(lo) and finite(hi)):
        return (f"ρ = {rho:.2f} over {n} domains{perm_txt}{ceil}; no bootstrap CI (too few "
                f"usable resamples), so the sign is not established{caveat}.")
    head = f"ρ = {rho:.2f}, {ci:.0%} CI [{lo:.2f}, {hi:.2f}] over {n} domains"
    if lo <= 0.0 <= hi:
        return (f"{head}: not distinguishable from zero at this sample size{perm_txt}{ceil}"
                f"{caveat}.")
    kind = "positive" if lo > 0.0 else "negative"
    return (f"{head}: {kind} correlation, {_direction(row, 1.0 if lo > 0 else -1.0)}"
            f"{perm_txt}{ceil}{caveat}.")


def primary_verdict(row: dict, ci: float = 0.95) -> str:
    """Plain-language verdict of the pre-declared primary analysis: established only when the
    BCa interval excludes 0 AND the permutation p is below 1 − ci; for target |Δ| a positive
    correlation supports STS, a negative one contradicts it, and for a signed Δ (whose sign STS
    does not predict) the verdict only says which way the metric moved. The noise ceiling says
    how much the Δ noise lets ρ show at all."""
    rho, lo, hi, p = row["pearson"], row["pearson_ci_low"], row["pearson_ci_high"], row["perm_p"]
    alpha = 1.0 - ci
    if not finite(rho):
        return (f"Undefined: ρ cannot be computed over {row['n_domains']} domains (fewer than 3, "
                "or a constant variable).")
    nums = (f"ρ = {rho:.2f}, {ci:.0%} BCa CI {fmt_ci(lo, hi)}, permutation p (unadjusted) = "
            f"{fmt(p, '.2g')}, {row['n_domains']} domains")
    sig = finite(p) and p < alpha
    signed = row.get("target", "abs") != "abs"
    if finite(lo) and lo > 0 and sig:
        word = "Established" if signed else "Supported"
        out = f"{word}: {_direction(row, 1.0)} ({nums})."
    elif finite(hi) and hi < 0 and sig:
        word = "Established" if signed else "Contradicted"
        out = f"{word}: {_direction(row, -1.0)} ({nums})."
    else:
        out = (f"Not established: the data cannot tell this correlation from zero ({nums})."
               if not (finite(lo) and (lo > 0 or hi < 0)) else
               f"Not established: the interval excludes 0 but the permutation test does not "
               f"reject at {alpha:.2g} ({nums}).")
    c = row.get("noise_ceiling")
    if finite(c):
        out += (f" Noise in Δ alone lets even a perfect predictor of the true Δ reach ρ ≈ {c:.2f} "
                "on average (the noise ceiling)")
        out += (": the Δ are too noisy for this test to say much either way." if c < 0.5
                else ".")
        if rho > c:
            out += (f" This ρ is above it: the ceiling is an expected value, not a bound, so an "
                    f"estimate over {row['n_domains']} domains can exceed it by chance; it is no "
                    "evidence of a predictor better than perfect.")
    else:
        out += " Noise ceiling n/a: Δ given without per-item data."
    return out


def versus_sentence(g: pl.DataFrame, primary: dict | None, ci: float) -> str:
    """One run of the predictor panel (``g``) in a sentence: the primary predictor against the
    best pre-training baseline, by the interval of their difference Δρ."""
    who = ", ".join(f"{k}={g[k][0]}" for k in ("method", "seed") if k in g.columns)
    best = g.filter(pl.col("best_baseline"))
    name = (primary or {}).get("predictor")
    if best.height == 0:
        return f"{who}: no baseline has a defined ρ; nothing to compare {name} with."
    b = best.row(0, named=True)
    lo, hi = b["diff_low"], b["diff_high"]
    if not (finite(lo) and finite(hi)):
        verdict = "the interval of the difference is undefined"
    elif lo > 0:
        verdict = f"{name} beats it: the {ci:.0%} interval of Δρ lies above 0"
    elif hi < 0:
        verdict = f"it beats {name}: the {ci:.0%} interval of Δρ lies below 0"
    else:
        verdict = (f"the {ci:.0%} interval of Δρ contains 0: these domains cannot tell {name} "
                   "from it")
    return (f"{who + ': ' if who else ''}best pre-training baseline {b['predictor']} (ρ "
            f"{fmt(b['pearson'], '.2f')}); Δρ = {fmt(b['diff'], '.2f')} "
            f"{fmt_ci(lo, hi)}: {verdict}.")


def declaration(primary: dict) -> str:
    """The declared primary analysis, as the report states it before its numbers."""
    target = "|Δ|" if primary.get("target") == "abs" else "signed Δ"
    sae = f" (SAE {primary['sae']})" if primary.get("sae") else ""
    run = (f"run {primary['method']} (every seed)" if primary.get("method")
           else "the Δ given in the config")
    return (f"predictor {primary.get('predictor')}, N = {primary.get('n_top')}, layer "
            f"{primary.get('layer')}{sae}, metric {primary.get('metric')}, {primary.get('protocol')} "
            f"domains, target {target}, {run}")


def primary_missing(corr: pl.DataFrame, primary: dict | None) -> str:
    """Why no row of the table is the declared primary analysis, naming the missing part."""
    if not primary:
        return "No primary analysis was declared (report.primary); every row is exploratory."
    fixes = {"n_top": "add it to sts.n_top or set report.primary.n_top",
             "layer": "configure that layer or set report.primary.layer",
             "sae": "set report.primary.sae to an SAE of that layer",
             "metric": "set report.primary.metric to a metric of the observed Δ",
             "predictor": "set report.primary.predictor to a computed predictor",
             "method": "set report.primary.method to a run of this report"}
    parts = []
    for k in PRIMARY_KEYS:
        if k == "sae" and "sae" not in corr.columns:  # one SAE per layer: nothing to match
            continue
        have = sorted({str(v) for v in corr[k].to_list()}) if k in corr.columns else []
        if k == "method" and ("method" not in corr.columns or "method" not in primary):
            continue  # Δ given in the config alone, or no run declared
        if (primary.get(k) is None and k != "method") or str(primary.get(k)) not in have:
            parts.append(f"{k} = {primary.get(k)} is not among the computed values "
                         f"[{', '.join(have)}] (fix: {fixes.get(k, 'change report.primary')})")
    if not parts:
        parts.append("each part exists, but no correlation row combines them all")
    return ("THE PRE-DECLARED PRIMARY ANALYSIS IS NOT IN THE DATA: " + "; ".join(parts)
            + ". Every row of this report is therefore exploratory.")


def row_label(r: dict, extra: list[str]) -> str:
    """Which analysis a correlation row is (model, SFT set, predictor, site, N, protocol, and
    the run keys ``extra``), for the sentence about it."""
    parts = [f"{r['model']}/{r['sft']}", str(r["predictor"]), f"layer {r['layer']}",
             *([f"SAE {r['sae']}"] if r.get("sae") else []),
             f"N={r['n_top']}", f"{r['protocol']} domains"]
    return ", ".join(parts + [f"{k}={r[k]}" for k in extra])
