"""The cross-SFT report page: which candidate SFT set to train on. The decision table leads, then
the heatmaps (predicted and observed side by side, SFT sets and domains in one order), how the
ranking changes under each normalisation, and the pooled validity with the per-SFT rows and the
predictor panel. The numbers come from ``analysis.matrix``, ``analysis.decision`` and
``analysis.pooled``; this module only lays them out (the same blocks as Markdown and HTML, from
``report.summary``'s document model)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stsflow.analysis.matrix import RUN_KEYS, harm, runs_of, select
from stsflow.io.files import atomic_path, write_text
from stsflow.report.formatting import fmt as _fmt
from stsflow.report.render import table_block as _table_block
from stsflow.report.render import to_html as _to_html
from stsflow.report.render import to_markdown as _to_markdown

HEATMAP = "matrix_heatmaps.png"


def _ci(lo, hi) -> str:
    ok = all(isinstance(v, float) and math.isfinite(v) for v in (lo, hi))
    return f"[{lo:.2f}, {hi:.2f}]" if ok else "n/a"


def _run_label(run: dict) -> str:
    return " ".join(f"{k}={run[k]}" for k in (*RUN_KEYS, "metric") if run.get(k) is not None)


def _harm_words(target: str) -> str:
    return ("|Δ| (the magnitude of change STS predicts; a gain counts as a change)"
            if target == "abs" else "the worsening (−Δ for an accuracy, +Δ for NLL)")


def heatmap_png(pred: pl.DataFrame, obs: pl.DataFrame | None, primary: dict, *,
                directions: dict[str, bool] | None = None) -> bytes:
    """Predicted (the declared predictor, normalised) and observed harm (the declared metric,
    one panel per run) as SFT set × domain heatmaps side by side, rows and columns in the
    matrix's shared order; each SFT set's own target domain outlined."""
    p = select(pred, {"predictor": primary["predictor"],
                      "normalisation": primary["normalisation"]})
    sfts = p["sft"].unique(maintain_order=True).to_list()
    domains = p["domain"].unique(maintain_order=True).to_list()
    panels = [("predicted: " + f"{primary['predictor']} ({primary['normalisation']})", p,
               "score")]
    if obs is not None and obs.height:
        o = harm(obs.filter(pl.col("metric") == primary["metric"]), primary["target"],
                 directions)
        for run in runs_of(o):
            panels.append((f"observed harm: {_run_label(run)}", select(o, run), "harm"))
    fig = Figure(figsize=(1.5 + 0.62 * len(domains) * len(panels) + 1.2 * len(panels),
                          1.6 + 0.45 * len(sfts)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    own = {(r["sft"], r["domain"]) for r in p.iter_rows(named=True) if r["own_target"]}
    for ax, (title, df, col) in zip(axes, panels):
        grid = np.full((len(sfts), len(domains)), np.nan)
        for s, d, v in df.select("sft", "domain", col).iter_rows():
            if s in sfts and d in domains and v is not None:
                grid[sfts.index(s), domains.index(d)] = v
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7, color="white"
                        if v < np.nanmean(grid) else "black")
            if (sfts[i], domains[j]) in own:
                ax.add_patch(_box(j, i))
        ax.set_xticks(range(len(domains)), domains, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(sfts)), sfts, fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8,
                     label="predicted harm" if col == "score" else f"harm ({primary['target']})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _box(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5)


def matrix_blocks(*, primary: dict, decision: pl.DataFrame, agreement: pl.DataFrame,
                  summary: pl.DataFrame, at_risk: pl.DataFrame, rankings: pl.DataFrame,
                  norm_summary: pl.DataFrame, pooled: pl.DataFrame, model: str,
                  ci: float = 0.95) -> list[tuple]:
    """The page's blocks (``report.summary``'s document model), in reading order: the decision
    table, the heatmaps, the normalisation comparison, the pooled validity."""
    target = primary["target"]
    blocks: list[tuple] = [("h", 1, f"{model}: which SFT set? The transfer matrix")]
    blocks.append(("h", 2, "Decision table"))
    blocks.append(("p", f"Declared before the data (report.matrix.primary): predictor "
                        f"{primary['predictor']} at layer {primary['layer']}"
                        + (f", SAE {primary['sae']}" if primary.get("sae") else "")
                        + f", N = {primary['n_top']}, ICL seed {primary['seed']}; scores "
                        f"normalised by {primary['normalisation']}; harm = {_harm_words(target)}"
                        f", metric {primary['metric']}. For each domain the candidate SFT sets "
                        "from most to least predicted harm, and where fine-tuning ran the same "
                        "by observed harm; Kendall's τ-b of the two, with its exact one-sided p "
                        "under a random ranking (chance τ = 0); the candidate predicted least "
                        "harmful and the one observed so (a hit when they match; chance 1/K). "
                        "A domain marked * is the SFT set's own target (sft.<name>.target): "
                        "there Δ is the gain fine-tuning is for."))
    runs = (decision.select(*RUN_KEYS, "metric").unique(maintain_order=True).to_dicts()
            if decision.height else [])
    for run in runs:
        d = select(decision, run)
        a = select(agreement, run) if agreement.height else agreement
        if run.get("metric") is not None:
            blocks.append(("h", 3, _run_label(run)))
        rows = []
        for dom in d["domain"].unique(maintain_order=True).to_list():
            g = d.filter(pl.col("domain") == dom)
            star = {s for s, t in g.select("sft", "own_target").iter_rows() if t}
            name = lambda s: s + ("*" if s in star else "")  # noqa: E731
            pr = " > ".join(name(s) for s in g.sort("predicted_rank")["sft"].to_list())
            og = g.filter(pl.col("observed_rank").is_not_null()).sort("observed_rank")
            orank = " > ".join(name(s) for s in og["sft"].to_list()) or "—"
            ar = a.filter(pl.col("domain") == dom).to_dicts() if a.height else []
            r = ar[0] if ar else {}
            rows.append([dom, pr, orank, _fmt(r.get("kendall_tau"), ".2f"),
                         _fmt(r.get("tau_p"), ".2g"), r.get("picked") or "—",
                         r.get("least") or "—",
                         {True: "yes", False: "no"}.get(r.get("top1_hit"), "—")])
        blocks.append(_table_block(["domain", "predicted harm (most > least)",
                                    "observed harm (most > least)", "τ-b", "p (τ ≥, random; unadjusted)",
                                    "predicted least harmful", "observed least harmful",
                                    "hit"], rows))
        s = select(summary, run).to_dicts() if summary.height else []
        if s:
            s = s[0]
            blocks.append(("p", f"Across {s['n_domains']} domains: the predicted least harmful "
                                f"candidate was the observed one in {s['top1_hits']} "
                                f"({_fmt(s['top1_rate'], '.0%')}, {ci:.0%} Clopper-Pearson "
                                f"{_ci(s['top1_ci_low'], s['top1_ci_high'])}) against "
                                f"{_fmt(s['top1_chance'], '.0%')} by chance (exact p, unadjusted = "
                                f"{_fmt(s['top1_p'], '.2g')}); mean τ-b "
                                f"{_fmt(s['mean_tau'], '.2f')} against 0 by chance (p, unadjusted = "
                                f"{_fmt(s['mean_tau_p'], '.2g')}, {s['mean_tau_p_method']}). "
                                "Chance is a random ranking, not a fixed preference for one "
                                "candidate."))
    blocks.append(("h", 3, "Domains each SFT set is predicted to hurt most"))
    blocks.append(_table_block(
        ["SFT set", "rank", "domain", f"{primary['predictor']} (raw)",
         f"normalised ({primary['normalisation']})"],
        [[r["sft"], r["rank"], r["domain"] + ("*" if r["own_target"] else ""),
          _fmt(r["raw"], ".3g"), _fmt(r["score"], ".2f")] for r in at_risk.to_dicts()]))

    blocks.append(("h", 2, "Heatmaps: predicted and observed"))
    blocks.append(("p", "Left: the declared predictor's normalised score (higher predicts more "
                        "harm). Right: the observed harm of each run. Same order of SFT sets "
                        "(rows) and domains (columns); red outline: the SFT set's own target "
                        "domain. Each panel has its own colour scale."))
    blocks.append(("img", HEATMAP, "Predicted and observed transfer matrix"))

    blocks.append(("h", 2, "How the ranking changes with the normalisation"))
    blocks.append(("p", "Raw scores depend on each SFT set's own shifted dimensions, so they "
                        "are put on one scale before SFT sets are compared (the declared one: "
                        f"{primary['normalisation']}). Per domain, the predicted ranking under "
                        "each normalisation and its τ-b with the declared one; below, how often "
                        "each changes the ranking and agrees with the observation. target: NaN "
                        "for an SFT set without a target domain or a non-positive score there."))
    names = rankings["normalisation"].unique(maintain_order=True).to_list()
    doms = rankings["domain"].unique(maintain_order=True).to_list()
    rows = []
    for dom in doms:
        g = rankings.filter(pl.col("domain") == dom)
        rows.append([dom, *[(g.filter(pl.col("normalisation") == n)["ranking"].to_list()
                             or [None])[0] or "n/a" for n in names]])
    blocks.append(_table_block(["domain", *names], rows))
    if norm_summary.height and "top1_hits" in norm_summary.columns:
        blocks.append(_table_block(
            ["normalisation", "run", "domains ranked differently", "top-1 hits", "chance",
             "p (hits ≥)", "mean τ-b", "p (τ ≥)"],
            [[r["normalisation"], _run_label(r), r["n_changed"],
              f"{r['top1_hits']} / {r['n_domains']}", _fmt(r["top1_chance"], ".0%"),
              _fmt(r["top1_p"], ".2g"), _fmt(r["mean_tau"], ".2f"), _fmt(r["mean_tau_p"], ".2g")]
             for r in norm_summary.to_dicts()]))

    blocks.append(("h", 2, "Pooled validity across SFT sets"))
    blocks.append(("p", "Pearson ρ of the predicted and observed harm over all (SFT set, "
                        "domain) cells. Cells sharing a domain or an SFT set are not "
                        f"independent: the {ci:.0%} interval is a pigeonhole bootstrap "
                        "(SFT sets and domains resampled independently, normal on Fisher's z), "
                        "the p-value a permutation of the observed matrix's SFT sets and "
                        "domains. The primary row is tested unadjusted; every other row is "
                        "exploratory with a Holm p within its family. Per-SFT rows: one SFT "
                        "set's domains (BCa bootstrap and permutation over domains). Δρ: "
                        "primary minus the row's ρ oriented by its own sign, paired over the "
                        "same resamples. Every row, every normalisation and target: "
                        "pooled.parquet."))
    if pooled.height == 0:
        blocks.append(("p", "No fine-tuning run or given Δ: the matrix is a prediction only, "
                            "and nothing can be validated yet."))
        return blocks
    prim = pooled.filter(pl.col("role") == "primary")
    if prim.height == 0:
        blocks.append(("p", "THE DECLARED PRIMARY ANALYSIS IS NOT IN THE DATA (its predictor, "
                            "normalisation, metric or target has no row): every row is "
                            "exploratory."))
    for r in prim.to_dicts():
        verdict = ("supported" if r["ci_low"] > 0 and r["perm_p"] < 1 - ci else
                   "contradicted" if r["ci_high"] < 0 and r["perm_p"] < 1 - ci else
                   "not established") if math.isfinite(r["pearson"]) else "undefined"
        blocks.append(("p", f"Primary ({_run_label(r)}): ρ = {_fmt(r['pearson'], '.2f')} "
                            f"{_ci(r['ci_low'], r['ci_high'])} over {r['n_cells']} cells "
                            f"({r['n_sft']} SFT sets × {r['n_domains']} domains), permutation "
                            f"p (unadjusted, pre-declared) = {_fmt(r['perm_p'], '.2g')}: "
                            f"{verdict}."))
    panel = select(pooled, {"normalisation": primary["normalisation"], "target": target,
                            "metric": primary["metric"]})
    head = ["scope", "run", "predictor", "family", "role", "cells", f"ρ [{ci:.0%} CI]",
            "perm p (unadjusted)", "Holm p (adjusted)", "Δρ vs primary [CI]"]
    rows = [[r["scope"], _run_label(r), r["predictor"], r["family"], r["role"], r["n_cells"],
             f"{_fmt(r['pearson'], '.2f')} {_ci(r['ci_low'], r['ci_high'])}",
             _fmt(r["perm_p"], ".2g"), _fmt(r["holm_p"], ".2g"),
             (f"{_fmt(r['diff'], '.2f')} {_ci(r['diff_low'], r['diff_high'])}"
              if isinstance(r["diff"], float) and math.isfinite(r["diff"]) else "—")]
            for r in panel.sort(pl.col("scope") != "all", maintain_order=True).to_dicts()]
    blocks.append(_table_block(head, rows))
    return blocks


def write_matrix_report(outdir, blocks: list[tuple], heatmap: bytes, *,
                        title: str) -> dict[str, Path]:
    """Write summary.md, summary.html (the heatmap embedded) and the heatmap PNG into
    ``outdir``, atomically; return file name -> path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = {}
    path = outdir / HEATMAP
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(heatmap)
    written[HEATMAP] = path
    for name, text in (("summary.md", _to_markdown(blocks)),
                       ("summary.html", _to_html(title, blocks, {HEATMAP: heatmap}))):
        write_text(outdir / name, text)
        written[name] = outdir / name
    return written
