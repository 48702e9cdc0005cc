"""Report of the validation step: correlations table, scatter plots, Markdown and HTML summaries.

The HTML is self-contained (plots embedded as base64 PNG) so it can be mailed or archived alone;
the Markdown references the PNG files next to it. Every file is written atomically.

The summary leads with the pre-declared primary analysis (its ρ, BCa and Fisher intervals,
unadjusted permutation p, noise ceiling and a plain-language verdict), or says plainly that the
declared analysis is not in the data and which part is missing; then the noise in Δ; then every
other row, labelled exploratory (Holm p) or descriptive (extremes). The statistical choices are
recorded in ``stsflow.analysis.correlation``. Scatter plots show every seed (one panel row per
layer and run), never a single seed standing for all.

``write_report`` composes the parts: ``sections`` (each section's blocks), ``verdicts`` (their
sentences), ``figures`` (the plots), ``rows`` (which rows each part shows), ``render`` (blocks to
Markdown and HTML) and ``formatting`` (numbers as text).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from stsflow.analysis import correlation as st
from stsflow.io.files import atomic_path, write_parquet, write_text
from stsflow.report import sections as sec
from stsflow.report.allocations import allocation_blocks
from stsflow.report.figures import bars_png, forest_png, runs_png, scatter_name, scatter_png
from stsflow.report.render import to_html, to_markdown
from stsflow.report.rows import bars_data, plot_metric


class _Files:
    """The report's files, each written atomically as it is made: name -> path, and the PNGs'
    bytes, which the HTML embeds."""

    def __init__(self, outdir: Path):
        self.outdir = outdir
        self.written: dict[str, Path] = {}
        self.images: dict[str, bytes] = {}

    def parquet(self, name: str, df: pl.DataFrame, metadata: dict) -> None:
        path = self.outdir / name
        write_parquet(df.to_arrow(), path, metadata=metadata)
        self.written[name] = path

    def png(self, name: str, data: bytes) -> None:
        self.images[name] = data
        path = self.outdir / name
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
        self.written[name] = path

    def text(self, name: str, text: str) -> None:
        path = self.outdir / name
        write_text(path, text)
        self.written[name] = path


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
    analysis (config.primary.resolve_primary); roles and Holm p are assigned here when ``corr``
    lacks them. ``ci`` only labels the intervals (the level the correlation table was computed
    with). ``warnings`` (e.g. a poor SAE, a declared model, an accepted hook) are listed right
    under the title, before any result. ``scatter_for``: predictors whose scatter plot is
    written even without rows here (an empty panel): the workflow declares one per predictor of
    the run, and a (model, SFT set) without tuned models has no true-shift rows."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if "role" not in corr.columns:
        corr = st.assign_roles(corr, primary)
    predictors = st.predictor_columns(sts)
    extra = [c for c in st.EXTRA_KEYS if c in observed.columns]
    corr_extra = [c for c in st.EXTRA_KEYS if c in corr.columns]
    files = _Files(outdir)
    files.parquet("correlations.parquet", corr,
                  {"title": title, "provenance": provenance, "primary": primary})

    metric = plot_metric(observed, primary)
    for v in dict.fromkeys([*predictors, *scatter_for]):
        rows = sts if v in sts.columns else sts.with_columns(pl.lit(None, pl.Float64).alias(v))
        files.png(scatter_name(v), scatter_png(v, rows, observed, corr, metric))

    blocks = [("h", 1, title), *sec.warning_blocks(warnings),
              *sec.primary_blocks(corr, primary, corr_extra, ci)]
    bars = bars_data(sts, observed, primary)
    files.png("bars.png", bars_png(bars, primary))
    blocks += sec.bars_blocks(bars, primary, list(files.images))
    if methods is not None:
        files.parquet("methods.parquet", methods, {"title": title})
        blocks += sec.methods_blocks(methods, ci)
        if allocations is not None and allocations.height:  # beside the table: each split
            files.parquet("allocations.parquet", allocations, {"title": title})
            blocks += allocation_blocks(allocations)
        files.png("runs.png", runs_png(observed.filter(pl.col("method").is_not_null())
                                       if "method" in observed.columns else observed, metric))
        blocks.append(("img", "runs.png", f"Δ of every run on every domain ({metric})"))
    if by_run is not None and by_run.height:
        files.parquet("by_run.parquet", by_run, {"title": title})
        blocks += sec.by_run_blocks(by_run, ci)
    if comparison is not None:
        files.parquet("comparison.parquet", comparison, {"title": title, "primary": primary})
        files.png("forest.png", forest_png(comparison, primary))
        blocks += sec.comparison_blocks(comparison, ablation if ablation is not None
                                        else pl.DataFrame(), primary, ci)
    if cards is not None:
        blocks += sec.cards_blocks(cards)
    blocks += [*sec.noise_blocks(observed, corr, extra), *sec.provenance_blocks(provenance),
               *sec.exploratory_blocks(corr, predictors, corr_extra, metric, ci),
               *sec.seed_blocks(corr), *sec.scatter_blocks(list(files.images), primary, metric),
               *sec.table_blocks(extra_tables), *sec.observed_blocks(observed, extra),
               *sec.sts_blocks(sts)]

    files.text("summary.md", to_markdown(blocks))
    files.text("summary.html", to_html(title, blocks, files.images))
    return files.written
