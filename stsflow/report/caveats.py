"""What the report must say about its inputs before any result: queries that did not fit the
model's context (``sts.context_check: warn`` let their runs go on) and top-N sets that hold fewer
than N dimensions because fewer moved (``scores.shift``). Each caveat is a sentence for the
report's warnings, built from the tables the report already reads."""

from __future__ import annotations

import polars as pl


def context_warnings(coverage: pl.DataFrame | None) -> list[str]:
    """One sentence per extraction run (corpus, mode) with queries beyond the model's context:
    their share, the limit, and what that means for the features."""
    if coverage is None or "n_context_overflow" not in coverage.columns:
        return []
    rows = coverage.filter(pl.col("n_context_overflow").fill_null(0) > 0)
    return [f"context: {r['n_context_overflow']} of {r['n_used']} queries "
            f"({r['share_context_overflow']:.0%}) of {r['kind']} {r['corpus']} ({r['mode']} run) "
            f"do not fit the model's context of {r['context_limit']} tokens with their prefix "
            "(sts.context_check: warn let the run go on): nothing was cut, so the model ran past "
            "the positions it was trained on (or, beyond a sliding window, those queries no "
            "longer see their first demonstrations); their features are outside what the "
            "method assumes. Coverage table below."
            for r in rows.iter_rows(named=True)]


def short_dn_warnings(sts: pl.DataFrame) -> list[str]:
    """One sentence per (layer, SAE, N, run) whose D_N holds fewer than N dimensions: fewer
    dimensions had a non-zero shift (or a tie straddled the cut), so its scores use those only,
    and its random control draws as many."""
    if "n_effective" not in sts.columns:
        return []
    keys = [c for c in ("model", "sft", "layer", "sae", "n_top", "method", "seed")
            if c in sts.columns]
    short = (sts.filter(pl.col("n_effective") < pl.col("n_top"))
             .group_by(keys, maintain_order=True).agg(pl.col("n_effective").first()))
    out = []
    for r in short.iter_rows(named=True):
        run = (f"true shift of {r['method']}" if r.get("method") else "predicted shift") + \
            (f", seed {r['seed']}" if r.get("seed") is not None else "")
        site = f"layer {r['layer']}" + (f"/{r['sae']}" if r.get("sae") else "")
        out.append(f"D_N at N = {r['n_top']} ({site}, {run}) holds {r['n_effective']} "
                   "dimensions: no more had a non-zero shift (or a tie straddled the cut), so "
                   "its scores use those only; none is padded by index (n_effective in the STS "
                   "table)")
    return out
