"""Report of the validation step: correlations table, scatter plots, Markdown and HTML summaries.

The HTML is self-contained (plots embedded as base64 PNG) so it can be mailed or archived alone;
the Markdown references the PNG files next to it. Every file is written atomically.

The summary leads with the pre-declared primary analysis (its ρ, BCa and Fisher intervals,
unadjusted permutation p, noise ceiling and a plain-language verdict), or says plainly that the
declared analysis is not in the data and which part is missing; then the noise in Δ; then every
other row, labelled exploratory (Holm p) or descriptive (extremes). The statistical choices are
recorded in ``stsflow.analysis.correlation``. Scatter plots show every seed (one panel row per layer and run),
never a single seed standing for all.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stsflow.analysis import correlation as st
from stsflow.io.files import atomic_path, write_parquet, write_text
from stsflow.report.allocations import allocation_blocks
from stsflow.report.card_views import CARDS_CSS, CARDS_JS, cards_html, cards_markdown_rows

_NA = "n/a"


# ---------------------------------------------------------------- formatting

def _isnum(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _fmt(v, spec: str = ".4g") -> str:
    if v is None:
        return _NA
    if isinstance(v, (float, np.floating)):
        return _NA if not math.isfinite(v) else format(float(v), spec)
    return str(v)


def _fmt_rho(row: dict) -> str:
    rho = _fmt(row["pearson"], ".2f")
    lo, hi = row["pearson_ci_low"], row["pearson_ci_high"]
    if rho == _NA or not (_isnum(lo) and _isnum(hi) and math.isfinite(lo) and math.isfinite(hi)):
        return rho
    return f"{rho} [{lo:.2f}, {hi:.2f}]"


def _finite(v) -> bool:
    return _isnum(v) and math.isfinite(v)


def _fmt_ci(lo, hi) -> str:
    return f"[{lo:.2f}, {hi:.2f}]" if _finite(lo) and _finite(hi) else _NA


def _ceiling_txt(row: dict) -> str:
    c = row.get("noise_ceiling")
    return (f"; noise ceiling {c:.2f}" if _finite(c)
            else "; noise ceiling n/a (no per-item data for Δ)")


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
    p_name, p = ("Holm-adjusted p", row.get("holm_p")) if "holm_p" in row else \
        ("permutation p", row.get("perm_p"))
    if row.get("role") == "primary":
        p_name, p = "permutation p (unadjusted, pre-declared)", row.get("perm_p")
    perm_txt = "" if descriptive or not _finite(p) else f", {p_name} = {p:.2g}"
    ceil = _ceiling_txt(row) if "noise_ceiling" in row else ""
    if not (_finite(lo) and _finite(hi)):
        return (f"ρ = {rho:.2f} over {n} domains{perm_txt}{ceil}; no bootstrap CI (too few "
                f"usable resamples), so the sign is not established{caveat}.")
    head = f"ρ = {rho:.2f}, {ci:.0%} CI [{lo:.2f}, {hi:.2f}] over {n} domains"
    if lo <= 0.0 <= hi:
        return (f"{head}: not distinguishable from zero at this sample size{perm_txt}{ceil}"
                f"{caveat}.")
    if lo > 0.0:
        return (f"{head}: positive correlation, higher STS goes with larger |Δ| as predicted"
                f"{perm_txt}{ceil}{caveat}.")
    return (f"{head}: negative correlation, higher STS goes with smaller |Δ|, opposite to the "
            f"prediction{perm_txt}{ceil}{caveat}.")


def primary_verdict(row: dict, ci: float = 0.95) -> str:
    """Plain-language verdict of the pre-declared primary analysis: supported only when the BCa
    interval excludes 0 on the predicted side AND the permutation p is below 1 − ci; the noise
    ceiling says how much the Δ noise lets ρ show at all."""
    rho, lo, hi, p = row["pearson"], row["pearson_ci_low"], row["pearson_ci_high"], row["perm_p"]
    alpha = 1.0 - ci
    if not _finite(rho):
        return (f"Undefined: ρ cannot be computed over {row['n_domains']} domains (fewer than 3, "
                "or a constant variable).")
    nums = (f"ρ = {rho:.2f}, {ci:.0%} BCa CI {_fmt_ci(lo, hi)}, permutation p = "
            f"{_fmt(p, '.2g')}, {row['n_domains']} domains")
    sig = _finite(p) and p < alpha
    if _finite(lo) and lo > 0 and sig:
        out = f"Supported: STS goes with larger |Δ| as predicted ({nums})."
    elif _finite(hi) and hi < 0 and sig:
        out = f"Contradicted: STS goes with smaller |Δ|, opposite to the prediction ({nums})."
    else:
        out = (f"Not established: the data cannot tell this correlation from zero ({nums})."
               if not (_finite(lo) and (lo > 0 or hi < 0)) else
               f"Not established: the interval excludes 0 but the permutation test does not "
               f"reject at {alpha:.2g} ({nums}).")
    c = row.get("noise_ceiling")
    if _finite(c):
        out += f" Noise in Δ alone caps ρ at about {c:.2f}"
        out += (": the Δ are too noisy for this test to say much either way." if c < 0.5
                else ".")
    else:
        out += " Noise ceiling n/a: Δ given without per-item data."
    return out


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


# ---------------------------------------------------------------- document model
# A summary is a list of blocks rendered twice (Markdown, HTML), so both always say the same.

def _table_block(headers: list[str], rows: list[list]) -> tuple:
    return ("table", headers, [[_fmt(v) for v in r] for r in rows])


def _df_block(df: pl.DataFrame) -> tuple:
    return _table_block(df.columns, [list(r) for r in df.iter_rows()])


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _to_markdown(blocks: list[tuple]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in b[1]) if b[1] else "_none_")
        elif kind == "table":
            headers, rows = b[1], b[2]
            if not rows:
                out.append("_no rows_")
                continue
            lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
                     "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "cards":
            headers, rows = cards_markdown_rows(b[1])
            out.append(_to_markdown([_table_block(headers, rows)]).strip())
    return "\n\n".join(out) + "\n"


_CSS = ("body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
        "th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top}"
        "th{background:#eee}img{max-width:100%}nav ul{columns:2}" + CARDS_CSS)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _to_html(title: str, blocks: list[tuple], images: dict[str, bytes]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    sections = [b[2] for b in blocks if b[0] == "h" and b[1] == 2]
    for b in blocks:
        kind = b[0]
        if kind == "h" and b[1] == 1:  # the title, then the contents (links to each section)
            out.append(f"<h1>{e(b[2])}</h1>")
            out.append("<nav><ul>" + "".join(f'<li><a href="#{_anchor(h)}">{e(h)}</a></li>'
                                             for h in sections) + "</ul></nav>")
        elif kind == "h" and b[1] == 2:
            out.append(f'<h2 id="{_anchor(b[2])}">{e(b[2])}</h2>')
        elif kind == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>"
                       if b[1] else "<p><em>none</em></p>")
        elif kind == "table":
            headers, rows = b[1], b[2]
            if not rows:
                out.append("<p><em>no rows</em></p>")
                continue
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers)
                       + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
                                 for r in rows)
                       + "</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(images[b[1]]).decode("ascii")
            out.append(f"<figure><img alt=\"{e(b[2])}\" src=\"data:image/png;base64,{data}\">"
                       f"<figcaption>{e(b[2])}</figcaption></figure>")
        elif kind == "cards":
            out.append(cards_html(b[1]))
    if any(b[0] == "cards" for b in blocks):
        out.append(f"<script>{CARDS_JS}</script>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- plots

def _filter_eq(df: pl.DataFrame, values: dict) -> pl.DataFrame:
    for c, v in values.items():
        if c in df.columns:
            df = df.filter(pl.col(c).eq_missing(pl.lit(v, dtype=df.schema[c])))
    return df


def _plot_metric(observed: pl.DataFrame, primary: dict | None) -> str | None:
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


def _scatter_png(predictor: str, sts: pl.DataFrame, observed: pl.DataFrame, corr: pl.DataFrame,
                 metric: str | None) -> bytes:
    """One panel per (model, sft, layer, run) row and N column, a run being one fine-tuning
    method × seed (or ICL seed): every seed is shown, none averaged away."""
    if metric is not None:
        obs = observed.filter(pl.col("metric") == metric)
        data, keys = st.pair_tables(predictor_rows(sts, predictor), obs)
        data = data.with_columns(x=pl.col(predictor), y=pl.col("delta").abs())
    else:
        data, keys = pl.DataFrame(schema={"model": pl.String, "sft": pl.String,
                                          "layer": pl.Int64, "n_top": pl.Int64,
                                          "metric": pl.String, "domain": pl.String,
                                          "x": pl.Float64, "y": pl.Float64}), \
            ["model", "sft", "layer", "n_top", "metric"]
    run_keys = keys[keys.index("metric") + 1:]
    row_keys = ["model", "sft", *st.site_keys(data), *run_keys]
    rows = data.select(row_keys).unique().sort(row_keys, nulls_last=True).rows(named=True)
    cols = sorted(data["n_top"].unique().to_list())
    multi = data.select("model", "sft").unique().height > 1
    nr, nc = max(len(rows), 1), max(len(cols), 1)

    fig = Figure(figsize=(4.6 * nc, 4.2 * nr), layout="constrained")
    FigureCanvasAgg(fig)  # Agg explicitly, without touching pyplot's global backend
    axes = fig.subplots(nr, nc, squeeze=False)
    fig.suptitle(f"{predictor} vs |Δ| (metric={metric}), one row per layer and run"
                 if metric else f"{predictor}: no observed Δ")
    for ax in axes.flat:
        ax.set_axis_off()
    for i, rk in enumerate(rows):
        for j, n_top in enumerate(cols):
            ax = axes[i, j]
            p = _filter_eq(data, {**rk, "n_top": n_top}).sort("domain")
            if p.height == 0:
                continue
            ax.set_axis_on()
            x, y = p["x"].to_numpy(), p["y"].to_numpy()
            ax.scatter(x, y, s=18)
            for xi, yi, d in zip(x, y, p["domain"].to_list()):
                if math.isfinite(xi) and math.isfinite(yi):
                    ax.annotate(d, (xi, yi), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
                slope, icpt = np.polyfit(x[ok], y[ok], 1)
                xs = np.array([x[ok].min(), x[ok].max()])
                ax.plot(xs, slope * xs + icpt, lw=1, color="0.4")
            ax.set_xlabel(predictor)
            ax.set_ylabel("|Δ|")
            head = f"{rk['model']}/{rk['sft']} " if multi else ""
            run = " ".join(f"{k}={rk[k]}" for k in run_keys if rk[k] is not None)
            site = f"L{rk['layer']}" + (f"/{rk['sae']}" if rk.get("sae") else "")
            lines = [f"{head}{site} N={n_top} {run}".rstrip()]
            for protocol in st.PROTOCOLS:
                r = _filter_eq(corr, {**rk, "n_top": n_top, "predictor": predictor,
                                      "target": "abs", "protocol": protocol, "metric": metric})
                if r.height:
                    rr = r.row(0, named=True)
                    tag = {"primary": " (primary)", "descriptive": " (descriptive)"}.get(
                        rr.get("role"), "")
                    lines.append(f"{protocol}{tag}: ρ = {_fmt_rho(rr)}, ceiling "
                                 f"{_fmt(rr.get('noise_ceiling'), '.2f')}, n = "
                                 f"{rr['n_domains']}")
            ax.set_title("\n".join(lines), fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


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
    site = _filter_eq(predictor_rows(sts, name),
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


def _bars_png(data: pl.DataFrame, primary: dict | None) -> bytes:
    """Predicted score per domain (bars) next to the observed Δ with its CI, one row of two panels
    per run, domains ordered by the score."""
    p = primary or {}
    runs = [c for c in ("method", "seed") if c in data.columns]
    groups = data.partition_by(runs, maintain_order=True) if runs and data.height else [data]
    nd = max((g.height for g in groups), default=1)
    fig = Figure(figsize=(11, max(1.6, 0.75 + 0.24 * nd) * len(groups)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for (a, b), g in zip(axes, groups):
        if g.height == 0:
            a.text(0.5, 0.5, "no domain has both a score and an observed Δ", ha="center")
            a.set_axis_off()
            b.set_axis_off()
            continue
        y = np.arange(g.height)[::-1]
        a.barh(y, g["score"].to_numpy(), color="tab:blue")
        a.set_yticks(y, g["domain"].to_list(), fontsize=8)
        a.set_xlabel(f"{p.get('predictor')} (layer {p.get('layer')}, N={p.get('n_top')})")
        d = g["delta"].to_numpy()
        lo, hi = g["ci_low"].to_numpy(), g["ci_high"].to_numpy()
        ok = np.isfinite(lo) & np.isfinite(hi)
        b.barh(y, d, color="tab:gray")  # no colour for better or worse: nll rises when worse
        if ok.any():  # clipped: a percentile CI need not contain its estimate
            b.errorbar(d[ok], y[ok], xerr=[np.maximum(d[ok] - lo[ok], 0),
                                           np.maximum(hi[ok] - d[ok], 0)],
                       fmt="none", ecolor="black", capsize=2, lw=1)
        b.axvline(0, color="black", lw=0.5)
        b.set_yticks(y, [""] * g.height)
        b.set_xlabel(f"observed Δ = after − before ({p.get('metric')}), with its CI")
        who = ", ".join(f"{k}={g[k][0]}" for k in runs if g[k][0] is not None)
        a.set_title(f"predicted{' — ' + who if who else ''}", fontsize=9)
        b.set_title("observed", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _forest_png(cmp: pl.DataFrame, primary: dict | None) -> bytes:
    """Predictors × ρ [CI] on the primary analysis, one panel per run; post-training rows and the
    random-dimension range marked."""
    runs = (cmp.partition_by([c for c in ("method", "seed") if c in cmp.columns],
                             maintain_order=True) if cmp.height else [])
    n = max(len(runs), 1)
    height = 0.8 + 0.28 * (max((r.height for r in runs), default=1) + 1)
    fig = Figure(figsize=(6.5 * n, height))
    FigureCanvasAgg(fig)
    colours = {"sts": "tab:blue", "raw": "tab:orange", "random": "tab:gray",
               "similarity": "tab:green", "probe": "tab:purple", "notebook": "tab:cyan",
               "post_training": "tab:red"}
    if not runs:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no correlation row matches the primary analysis", ha="center",
                va="center")
        ax.set_axis_off()
    for i, g in enumerate(runs):
        ax = fig.add_subplot(1, n, i + 1)
        rows = g.to_dicts()[::-1]
        for y, r in enumerate(rows):
            c = colours.get(r["family"], "black")
            lo, hi, rho = r["pearson_ci_low"], r["pearson_ci_high"], r["pearson"]
            if _finite(lo) and _finite(hi):
                ax.plot([lo, hi], [y, y], color=c, lw=1.5)
            if _finite(rho):
                ax.plot([rho], [y], "o" if not r["post_training"] else "s", color=c,
                        mfc="white" if r["post_training"] else c)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r["predictor"] + (" (post-training)" if r["post_training"] else "")
                            + (" [best baseline]" if r["best_baseline"] else "") for r in rows],
                           fontsize=7)
        ax.axvline(0, color="black", lw=0.5)
        ax.set_xlim(-1.05, 1.05)
        ax.set_xlabel("Pearson ρ with |Δ| [CI]" if (primary or {}).get("target") == "abs"
                      else "Pearson ρ with Δ [CI]")
        who = ", ".join(f"{k}={g[k][0]}" for k in ("method", "seed") if k in g.columns)
        ax.set_title(who or "primary analysis", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _comparison_blocks(cmp: pl.DataFrame, ablation: pl.DataFrame, primary: dict | None,
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
                        "baselines. Exploratory: no p-value here is adjusted for the panel."))
    if cmp.height == 0:
        blocks.append(("p", "No correlation row matches the primary analysis: no panel."))
    else:
        runs = [c for c in ("method", "seed") if c in cmp.columns]
        blocks.append(("img", "forest.png", "Forest plot: predictors × ρ [CI], primary analysis"))
        blocks.append(_table_block(
            [*runs, "predictor", "family", "n", f"Pearson ρ [{ci:.0%} CI]", "perm p",
             "share of random draws ≥ STS on D_N", f"Δρ vs primary [{ci:.0%} CI]"],
            [[*(r[k] for k in runs),
              r["predictor"] + (" (post-training)" if r["post_training"] else "")
              + (" [best baseline]" if r["best_baseline"] else ""), r["family"],
              r["n_domains"], _fmt_rho(r), _fmt(r["perm_p"], ".2g"),
              _fmt(r["share_at_least"], ".2f"),
              (f"{_fmt(r['diff'], '.2f')} {_fmt_ci(r['diff_low'], r['diff_high'])}"
               if _finite(r["diff"]) else _NA)] for r in cmp.to_dicts()]))
        blocks.append(("ul", [_versus_sentence(g, primary, ci) for g in (
            cmp.partition_by(runs, maintain_order=True) if runs else [cmp])]))
    blocks.append(("h", 2, "Ablation: layer, SAE and N"))
    blocks.append(("p", f"The primary predictor ({(primary or {}).get('predictor')}) on the "
                        "primary metric, protocol and target, by layer, SAE (its width, its k "
                        "when TopK and its L0 measured on held-out tokens: the sparsity "
                        "ablation) and N; every row but the primary one is exploratory (Holm p "
                        "within its family)."))
    blocks.append(_df_block(ablation))
    return blocks


def _versus_sentence(g: pl.DataFrame, primary: dict | None, ci: float) -> str:
    who = ", ".join(f"{k}={g[k][0]}" for k in ("method", "seed") if k in g.columns)
    best = g.filter(pl.col("best_baseline"))
    name = (primary or {}).get("predictor")
    if best.height == 0:
        return f"{who}: no baseline has a defined ρ; nothing to compare {name} with."
    b = best.row(0, named=True)
    lo, hi = b["diff_low"], b["diff_high"]
    if not (_finite(lo) and _finite(hi)):
        verdict = "the interval of the difference is undefined"
    elif lo > 0:
        verdict = f"{name} beats it: the {ci:.0%} interval of Δρ lies above 0"
    elif hi < 0:
        verdict = f"it beats {name}: the {ci:.0%} interval of Δρ lies below 0"
    else:
        verdict = (f"the {ci:.0%} interval of Δρ contains 0: these domains cannot tell {name} "
                   "from it")
    return (f"{who + ': ' if who else ''}best pre-training baseline {b['predictor']} (ρ "
            f"{_fmt(b['pearson'], '.2f')}); Δρ = {_fmt(b['diff'], '.2f')} "
            f"{_fmt_ci(lo, hi)}: {verdict}.")


# ---------------------------------------------------------------- report

def _headline_rows(corr: pl.DataFrame, predictors: list[str], keys: list[str]) -> list[dict]:
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


def _row_label(r: dict, extra: list[str]) -> str:
    parts = [f"{r['model']}/{r['sft']}", str(r["predictor"]), f"layer {r['layer']}",
             *([f"SAE {r['sae']}"] if r.get("sae") else []),
             f"N={r['n_top']}", f"{r['protocol']} domains"]
    return ", ".join(parts + [f"{k}={r[k]}" for k in extra])


def _declaration(primary: dict) -> str:
    target = "|Δ|" if primary.get("target") == "abs" else "signed Δ"
    sae = f" (SAE {primary['sae']})" if primary.get("sae") else ""
    return (f"predictor {primary.get('predictor')}, N = {primary.get('n_top')}, layer "
            f"{primary.get('layer')}{sae}, metric {primary.get('metric')}, {primary.get('protocol')} "
            f"domains, target {target}")


def _primary_missing(corr: pl.DataFrame, primary: dict | None) -> str:
    """Why no row of the table is the declared primary analysis, naming the missing part."""
    if not primary:
        return "No primary analysis was declared (report.primary); every row is exploratory."
    fixes = {"n_top": "add it to sts.n_top or set report.primary.n_top",
             "layer": "configure that layer or set report.primary.layer",
             "sae": "set report.primary.sae to an SAE of that layer",
             "metric": "set report.primary.metric to a metric of the observed Δ",
             "predictor": "set report.primary.predictor to a computed predictor"}
    parts = []
    for k in st.PRIMARY_KEYS:
        if k == "sae" and "sae" not in corr.columns:  # one SAE per layer: nothing to match
            continue
        have = sorted({str(v) for v in corr[k].to_list()}) if k in corr.columns else []
        if primary.get(k) is None or str(primary.get(k)) not in have:
            parts.append(f"{k} = {primary.get(k)} is not among the computed values "
                         f"[{', '.join(have)}] (fix: {fixes.get(k, 'change report.primary')})")
    if not parts:
        parts.append("each part exists, but no correlation row combines them all")
    return ("THE PRE-DECLARED PRIMARY ANALYSIS IS NOT IN THE DATA: " + "; ".join(parts)
            + ". Every row of this report is therefore exploratory.")


def _primary_blocks(corr: pl.DataFrame, primary: dict | None, run_keys: list[str],
                    ci: float) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Primary analysis (pre-declared)")]
    if primary:
        blocks.append(("p", f"Declared in the config before the data: {_declaration(primary)}. "
                            "Its permutation p is the one test of this report and is not "
                            f"adjusted. Intervals: {ci:.0%} BCa bootstrap over domains, with the "
                            "Fisher z interval beside it. Noise ceiling: the highest ρ the "
                            "measurement noise of Δ allows (even a perfect predictor of the true "
                            "|Δ| would not exceed it)."))
    rows = (corr.filter(pl.col("role") == "primary").sort(["model", "sft", *run_keys],
                                                          nulls_last=True).to_dicts()
            if corr.height else [])
    if not rows:
        blocks.append(("p", _primary_missing(corr, primary)))
        return blocks
    keys = ["model", "sft", *run_keys]
    blocks.append(_table_block(
        [*keys, "n", f"Pearson ρ [{ci:.0%} BCa CI]", "Fisher z CI", "perm p (unadjusted)",
         "noise ceiling"],
        [[*(r[k] for k in keys), r["n_domains"], _fmt_rho(r),
          _fmt_ci(r["pearson_fisher_low"], r["pearson_fisher_high"]), _fmt(r["perm_p"], ".2g"),
          _fmt(r["noise_ceiling"], ".2f")] for r in rows]))
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


def _noise_blocks(observed: pl.DataFrame, corr: pl.DataFrame, extra: list[str]) -> list[tuple]:
    """Per run and metric: how noisy Δ is, how many domains move beyond their noise, and the
    ceiling that noise puts on ρ (target |Δ|, all domains)."""
    blocks: list[tuple] = [("h", 2, "Noise in Δ")]
    blocks.append(("p", "SE: paired standard error of Δ over items (sd of per-item differences / "
                        "√n), per domain in the Observed Δ table below. 'Δ CI excludes 0' counts "
                        "the domains whose paired bootstrap CI of Δ lies on one side of 0. Noise "
                        "ceiling: mean over simulations of corr(|Δ|, |Δ + ε|), ε ~ N(0, SE²) — "
                        "the highest ρ with |Δ| the noise allows. Δ given in the config have no "
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
                    if known.any() else _NA)
        else:
            excl = _NA
        c = _filter_eq(corr, {**kv, "target": "abs", "protocol": "all"}) if corr.height else corr
        ceiling = c["noise_ceiling"][0] if c.height else math.nan
        rows.append([*kv.values(), g.height,
                     _fmt(float(np.mean(se)), ".3g") if np.isfinite(se).all() else _NA,
                     _fmt(float(np.max(se)), ".3g") if np.isfinite(se).all() else _NA,
                     excl, _fmt(ceiling, ".2f")])
    blocks.append(_table_block([*keys, "domains", "mean SE", "max SE", "Δ CI excludes 0",
                                "noise ceiling (|Δ|, all)"], rows))
    return blocks


def _by_run_blocks(by_run: pl.DataFrame, ci: float) -> list[tuple]:
    """The ICL prediction and the true shift, run by run (analysis.methods.prediction_by_run):
    the paper's RL comparison, for SFT, RL and post-hoc runs alike."""
    def rho(r, kind):
        return _fmt_rho({"pearson": r[kind], "pearson_ci_low": r[f"{kind}_ci_low"],
                         "pearson_ci_high": r[f"{kind}_ci_high"]})

    pred = by_run["predictor"][0]
    return [("h", 2, "Prediction and true shift, run by run"),
            ("p", f"At the primary analysis' layer, SAE, N and target, for each tuned run "
                  f"(SFT, RL such as grpo, post-hoc pairs) and each evaluated metric (also "
                  f"by_run.parquet): Pearson ρ of {pred} computed on the ICL-predicted "
                  f"dimensions with the run's |Δ| (or Δ, as the primary target), beside ρ of "
                  f"{pred}_oracle, the "
                  f"same score on the run's true shifted dimensions (needs the tuned model), with "
                  f"{ci:.0%} BCa CIs over domains and permutation p, and the overlap "
                  "|D_N ∩ D_N^true| / N of the two dimension sets. The paper found ICL predicts "
                  "RL's shifts poorly and the true dimensions restore the correlation."),
            _table_block(["run", "seed", "metric", "n", "ρ ICL [CI]", "p", "ρ true shift [CI]",
                          "p", "overlap"],
                         [[r["method"], r["seed"], r["metric"], r["n_domains"], rho(r, "icl"),
                           _fmt(r["icl_perm_p"], ".2g"), rho(r, "true"),
                           _fmt(r["true_perm_p"], ".2g"), _fmt(r["overlap"], ".2f")]
                          for r in by_run.iter_rows(named=True)])]


def _methods_blocks(methods: pl.DataFrame, ci: float) -> list[tuple]:
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
                 "better): otherwise n/a, the reason below the table. Times are "
                 "wall-clock per job: compare "
                 "them within one run on one machine. A run trained before stsflow recorded "
                 "its trainable parameters shows —.")]
    def ci4(lo, hi):  # Δ of an accuracy is often below 0.01: four decimals
        return f"[{lo:+.4f}, {hi:+.4f}]" if _finite(lo) and _finite(hi) else _NA

    rows, why = [], []  # why: each distinct reason a gain kept is n/a, numbered in the table
    for r in methods.sort(["metric", "method", "seed"]).iter_rows(named=True):
        if r.get("gain_kept_reason") and r["gain_kept_reason"] not in why:
            why.append(r["gain_kept_reason"])
        rows.append([r["method"], r["seed"], r["metric"],
                     f"{r['n_trainable']:,}" if r["n_trainable"] is not None else "—",
                     _fmt(r["seconds"], ".0f"),
                     (f"{_fmt(r['target_delta'], '+.4f')} "
                      f"{ci4(r['target_ci_low'], r['target_ci_high'])}"
                      if r["target_delta"] is not None else "—"),
                     (f"{_fmt(r['others_mean'], '+.4f')} "
                      f"{ci4(r['others_ci_low'], r['others_ci_high'])}"
                      if r["others_mean"] is not None else "—"),
                     (f"{_fmt(r['others_worst'], '+.4f')} ({r['worst_domain']})"
                      if r["others_worst"] is not None else "—"),
                     _fmt(r["others_spread"], ".4f"),
                     (f"{r['n_below']} / {r['n_above']}" if r["n_below"] is not None
                      else "—"), (f"{_NA} ({why.index(r['gain_kept_reason']) + 1})"
                                   if r.get("gain_kept_reason") else
                                   _fmt(r["gain_kept"], ".2f"))])
    out.append(_table_block(["method", "seed", "metric", "trainable params", "time (s)",
                             f"Δ {target or 'target'} [{ci:.0%} CI]",
                             f"mean Δ other domains [{ci:.0%} CI]", "lowest Δ (domain)",
                             "spread of Δ", "CI below / above 0", "gain kept"], rows))
    if why:
        out.append(("ul", [f"gain kept n/a ({i}): {w}" for i, w in enumerate(why, 1)]))
    return out


def _runs_png(observed: pl.DataFrame, metric: str | None) -> bytes:
    """Δ of every run (rows) on every domain (columns) for one metric, with each cell's value:
    the strategies and methods side by side."""
    obs = observed.filter(pl.col("metric") == metric) if metric else observed
    runs = obs.select("method", "seed").unique(maintain_order=True).rows()
    domains = sorted(set(obs["domain"].to_list()))
    grid = np.full((len(runs), len(domains)), np.nan)
    for r in obs.iter_rows(named=True):
        grid[runs.index((r["method"], r["seed"])), domains.index(r["domain"])] = r["delta"]
    fig = Figure(figsize=(1.2 + 0.75 * len(domains), 1.0 + 0.4 * len(runs)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, cmap="coolwarm", vmin=-lim or -1, vmax=lim or 1, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:+.3f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(domains)), domains, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(runs)), [f"{m} s{s}" for m, s in runs], fontsize=8)
    fig.colorbar(im, ax=ax, label=f"Δ = after − before ({metric})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_report(corr: pl.DataFrame, sts: pl.DataFrame, observed: pl.DataFrame, outdir: Path, *,
                 title: str, provenance: dict, primary: dict | None = None, ci: float = 0.95,
                 extra_tables: list[tuple[str, pl.DataFrame]] = (),
                 warnings: list[str] = (), comparison: pl.DataFrame | None = None,
                 ablation: pl.DataFrame | None = None,
                 cards: pl.DataFrame | None = None,
                 methods: pl.DataFrame | None = None,
                 scatter_for: list[str] = (),
                 by_run: pl.DataFrame | None = None,
                 allocations: pl.DataFrame | None = None) -> dict[str, Path]:
    """Write correlations.parquet, summary.md, summary.html and scatter_<predictor>.png into
    ``outdir``; return file name -> path. The summary leads with the pre-declared ``primary``
    analysis (analysis.correlation.resolve_primary); roles and Holm p are assigned here when ``corr`` lacks them.
    ``ci`` only labels the intervals (the level the correlation table was computed with).
    ``warnings`` (e.g. a poor SAE, a declared model, an accepted hook) are listed right under the
    title, before any result. ``scatter_for``: predictors whose scatter plot is written even
    without rows here (an empty panel): the workflow declares one per predictor of the run, and
    a (model, SFT set) without tuned models has no true-shift rows."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if "role" not in corr.columns:
        corr = st.assign_roles(corr, primary)
    predictors = st.predictor_columns(sts)
    extra = [c for c in st.EXTRA_KEYS if c in observed.columns]
    corr_extra = [c for c in st.EXTRA_KEYS if c in corr.columns]
    written: dict[str, Path] = {}

    path = outdir / "correlations.parquet"
    write_parquet(corr.to_arrow(), path, metadata={"title": title, "provenance": provenance,
                                                   "primary": primary})
    written[path.name] = path

    metric = _plot_metric(observed, primary)
    images: dict[str, bytes] = {}
    for v in dict.fromkeys([*predictors, *scatter_for]):
        name = f"scatter_{_safe_name(v)}.png"
        rows = sts if v in sts.columns else sts.with_columns(pl.lit(None, pl.Float64).alias(v))
        images[name] = _scatter_png(v, rows, observed, corr, metric)
        path = outdir / name
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(images[name])
        written[name] = path

    blocks: list[tuple] = [("h", 1, title)]
    if warnings:
        blocks.append(("h", 2, "Warnings"))
        blocks.append(("ul", list(warnings)))
    blocks += _primary_blocks(corr, primary, corr_extra, ci)

    bars = bars_data(sts, observed, primary)
    images["bars.png"] = _bars_png(bars, primary)
    path = outdir / "bars.png"
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(images["bars.png"])
    written[path.name] = path
    blocks.append(("h", 2, "Predicted and observed, domain by domain"))
    blocks.append(("p", f"Left: the primary predictor ({(primary or {}).get('predictor')}) per "
                        "domain, largest first. Right: the observed Δ of the primary metric "
                        "with its paired bootstrap CI over items (no CI for Δ given in the "
                        "config). One row per run; the scatter plot below shows the same "
                        f"pairs. {bars['domain'].n_unique()} domains have both."))
    blocks.append(("img", "bars.png", "Predicted score and observed Δ per domain"))
    own = (primary or {}).get("predictor")
    if own and f"scatter_{_safe_name(own)}.png" in images:
        blocks.append(("img", f"scatter_{_safe_name(own)}.png",
                       f"{own} vs |Δ| (the primary predictor), every seed"))
    if methods is not None:
        path = outdir / "methods.parquet"
        write_parquet(methods.to_arrow(), path, metadata={"title": title})
        written[path.name] = path
        blocks += _methods_blocks(methods, ci)
        if allocations is not None and allocations.height:  # beside the table: each split
            path = outdir / "allocations.parquet"
            write_parquet(allocations.to_arrow(), path, metadata={"title": title})
            written[path.name] = path
            blocks += allocation_blocks(allocations)
        images["runs.png"] = _runs_png(observed.filter(pl.col("method").is_not_null())
                                       if "method" in observed.columns else observed, metric)
        path = outdir / "runs.png"
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(images["runs.png"])
        written[path.name] = path
        blocks.append(("img", "runs.png", f"Δ of every run on every domain ({metric})"))
    if by_run is not None and by_run.height:
        path = outdir / "by_run.parquet"
        write_parquet(by_run.to_arrow(), path, metadata={"title": title})
        written[path.name] = path
        blocks += _by_run_blocks(by_run, ci)
    if comparison is not None:
        path = outdir / "comparison.parquet"
        write_parquet(comparison.to_arrow(), path, metadata={"title": title, "primary": primary})
        written[path.name] = path
        images["forest.png"] = _forest_png(comparison, primary)
        path = outdir / "forest.png"
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(images["forest.png"])
        written[path.name] = path
        blocks += _comparison_blocks(comparison, ablation if ablation is not None
                                     else pl.DataFrame(), primary, ci)
    if cards is not None:
        blocks.append(("h", 2, "Feature cards: what moved"))
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
    blocks += _noise_blocks(observed, corr, extra)

    blocks.append(("h", 2, "Provenance"))
    blocks.append(_table_block(["key", "value"], [
        [str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)]
        for k, v in provenance.items()]))

    head_keys = ["model", "sft", "predictor", *st.site_keys(corr), "n_top", "protocol", "metric",
                 *corr_extra]
    abs_rows = _headline_rows(corr, predictors, head_keys)
    blocks.append(("h", 2, "Exploratory analyses"))
    blocks.append(("p", "Every row other than the primary one is exploratory: its p-value is the "
                        "permutation p Holm-adjusted over its family, all exploratory rows of one "
                        "(model, sft, target, method, seed): every predictor, layer, N and metric. "
                        "Extreme-groups rows (the 4 largest and 4 smallest |Δ|) select domains on "
                        "Δ: their intervals are descriptive and they carry no p-value. Intervals "
                        f"are {ci:.0%} BCa bootstrap over domains; Fisher z beside them. "
                        f"Sentences below: metric {metric}."))
    blocks.append(("ul", [
        f"{_row_label(r, corr_extra)} [{r['role']}]: {interpret(r, ci)}"
        for r in abs_rows if r["metric"] == metric]))

    blocks.append(("h", 2, "Correlation with |Δ|"))
    blocks.append(_table_block(
        [*head_keys, "role", "n", f"Pearson ρ [{ci:.0%} CI]", "CI method", "Fisher z CI",
         "noise ceiling", "Spearman", "perm p", "Holm p"],
        [[*(r[k] for k in head_keys), r["role"], r["n_domains"], _fmt_rho(r),
          "descriptive (domains selected on Δ)" if r["role"] == "descriptive" else r["ci_method"],
          _fmt_ci(r["pearson_fisher_low"], r["pearson_fisher_high"]),
          _fmt(r["noise_ceiling"], ".2f"), _fmt(r["spearman"], ".2f"), _fmt(r["perm_p"], ".2g"),
          _fmt(r["holm_p"], ".2g")] for r in abs_rows]))

    if "seed" in corr.columns:
        summ = st.seed_summary(corr.filter(pl.col("target") == "abs"))
        keys = [c for c in summ.columns if c not in ("target", "ci_method", "n_seeds",
                                                     "pearson_mean", "pearson_std")]
        blocks.append(("h", 2, "Pearson ρ across seeds (|Δ|)"))
        blocks.append(("p", "Mean ± sd (ddof = 1) of the per-seed ρ, as the paper reports; the "
                            "scatter plots show every seed."))
        blocks.append(_table_block([*keys, "seeds", "ρ mean ± sd"], [
            [*(r[k] for k in keys), r["n_seeds"],
             f"{_fmt(r['pearson_mean'], '.2f')} ± {_fmt(r['pearson_std'], '.2f')}"]
            for r in summ.to_dicts()]))

    # every predictor's scatter but the primary one's, which leads the report
    lead = f"scatter_{_safe_name(own)}.png" if own else None
    scatters = [n for n in images if n.startswith("scatter_") and n != lead]
    if scatters:
        blocks.append(("h", 2, "Scatter plots"))
        for name in scatters:
            blocks.append(("img", name, name[len("scatter_"):-len(".png")]
                           + f" vs |Δ|, metric {metric}, one row per layer and seed"))

    for heading, table in extra_tables:
        blocks.append(("h", 2, heading))
        blocks.append(_df_block(table))

    blocks.append(("h", 2, "Observed Δ"))
    obs_keys = ["model", "sft", "metric", *extra]
    noise_cols = [c for c in ("delta_se", "ci_low", "ci_high") if c in observed.columns]
    obs_tab = (observed.select([*obs_keys, "domain", pl.col("delta").cast(pl.Float64),
                                *[pl.col(c).cast(pl.Float64) for c in noise_cols]])
               .with_columns(abs_delta=pl.col("delta").abs())
               .sort([*obs_keys, "abs_delta", "domain"], descending=[False] * len(obs_keys)
                     + [True, False], nulls_last=True))
    blocks.append(_df_block(obs_tab))

    blocks.append(("h", 2, "STS scores"))
    sort_cols = [c for c in ("model", "sft", "layer", "sae", "n_top", "domain")
                 if c in sts.columns]
    blocks.append(_df_block(sts.sort(sort_cols) if sort_cols else sts))

    for name, text in (("summary.md", _to_markdown(blocks)),
                       ("summary.html", _to_html(title, blocks, images))):
        path = outdir / name
        write_text(path, text)
        written[name] = path
    return written
