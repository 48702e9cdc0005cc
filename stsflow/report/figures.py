"""The report's plots (matplotlib, on the Agg canvas without touching pyplot's global backend),
each returned as PNG bytes: the scatter plots (every seed shown, none averaged away), the
predicted and observed bars per domain, the predictor panel's forest plot, and the Δ of every
run on every domain."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stsflow.analysis import correlation as st
from stsflow.report.formatting import finite, fmt, fmt_rho
from stsflow.report.rows import filter_eq, predictor_rows


def scatter_name(predictor: str) -> str:
    """The file of a predictor's scatter plot."""
    return f"scatter_{_safe_name(predictor)}.png"


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _png(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def scatter_png(predictor: str, sts: pl.DataFrame, observed: pl.DataFrame, corr: pl.DataFrame,
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
            p = filter_eq(data, {**rk, "n_top": n_top}).sort("domain")
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
                r = filter_eq(corr, {**rk, "n_top": n_top, "predictor": predictor,
                                      "target": "abs", "protocol": protocol, "metric": metric})
                if r.height:
                    rr = r.row(0, named=True)
                    tag = {"primary": " (primary)", "descriptive": " (descriptive)"}.get(
                        rr.get("role"), "")
                    lines.append(f"{protocol}{tag}: ρ = {fmt_rho(rr)}, ceiling "
                                 f"{fmt(rr.get('noise_ceiling'), '.2f')}, n = "
                                 f"{rr['n_domains']}")
            ax.set_title("\n".join(lines), fontsize=8)
    return _png(fig)


def bars_png(data: pl.DataFrame, primary: dict | None) -> bytes:
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
    return _png(fig)


def forest_png(cmp: pl.DataFrame, primary: dict | None) -> bytes:
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
            if finite(lo) and finite(hi):
                ax.plot([lo, hi], [y, y], color=c, lw=1.5)
            if finite(rho):
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
    return _png(fig, dpi=110)


def runs_png(observed: pl.DataFrame, metric: str | None) -> bytes:
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
    return _png(fig)
