"""The report's account of the data mixture's allocations (analysis.allocations): one row per
mixture run with its replay items per domain (and the value each was weighed by), what no
domain could take, and in words when a split is uniform's or two runs trained on the same
data. Blocks in the summary's document model (report.summary)."""

from __future__ import annotations

import math

import polars as pl


def _value(v) -> str:
    return f" ({v:.4g})" if v is not None and math.isfinite(v) else ""


def _note(r: dict) -> str:
    notes = []
    if r["strategy"] != "uniform" and r["equals_uniform"]:
        notes.append("the uniform split")
    if r["same_data"]:
        who = "this run" if r["trains"] == r["method"] else r["trains"]
        notes.append(f"the same training data as {r['same_data'].replace(';', ', ')} "
                     f"(one run, trained and evaluated once, as {who})")
    return "; ".join(notes) or "—"


def allocation_blocks(table: pl.DataFrame) -> list[tuple]:
    """The section's blocks: a heading, what the table shows, the table (runs by method and
    seed, one column per domain), and a sentence per run whose split is uniform's."""
    domains = list(dict.fromkeys(table["domain"].to_list()))
    runs = table.group_by(["method", "seed"], maintain_order=True)
    rows, uniform_like = [], []
    for (method, seed), g in sorted(runs, key=lambda kg: (kg[0][1], kg[0][0])):
        by = {r["domain"]: r for r in g.iter_rows(named=True)}
        first = g.row(0, named=True)
        rule = first["allocation"] or first["strategy"]
        if first["allocation"] == "softmax" and first["temperature"] is not None:
            rule += f" (T = {first['temperature']:g})"
        rows.append([method, str(seed), rule]
                    + [f"{by[d]['count']}{_value(by[d]['value'])}" if d in by else "—"
                       for d in domains]
                    + [str(first["n_short"]), _note(first)])
        if first["strategy"] != "uniform" and first["equals_uniform"]:
            uniform_like.append(f"{method} (seed {seed})")
    text = ("Each data-mixture run's replay items per domain, as its fine-tuning job recorded "
            "them, with the value each domain was weighed by in brackets (the score for sts, "
            "|Δ| of the plain run for oracle); short: budget no domain could take (every "
            "domain at its items). A split equal to uniform's, domain for domain, cannot show "
            "what the prediction adds; two runs with the same items per domain, method and "
            "seed train on the same data (the same items in the same order), so they are one "
            "run, trained and evaluated once. Also in allocations.parquet (weights, shares, "
            "items available).")
    out = [("h", 3, "Data-mixture allocations"), ("p", text),
           ("table", ["run", "seed", "rule", *domains, "short", "note"], rows)]
    if uniform_like:
        out.append(("p", f"Split as uniform splits: {', '.join(uniform_like)}. On these "
                         "scores the rule gives every domain the uniform count, so these runs "
                         "test the replay, not the prediction."))
    return out
