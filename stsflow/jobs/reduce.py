"""Jobs of the reduction rules: shift vectors, one STS row per (domain, N), the STS tables, the
observed Δ table, the overlap of predicted and true shifted dimensions, and the coverage table.
Torch-free: these rules run in the small reduction environment."""

from __future__ import annotations

import pyarrow as pa

from stsflow import scores
from stsflow.features.stats import Stats
from stsflow.io.files import read_frame, read_metadata, read_table, write_parquet

# -- reductions ---------------------------------------------------------------------------------

def shift(icl_stats, panel, outs: dict, meta: dict, unaligned: dict | None = None,
          unaligned_rows: int = 10000) -> None:
    """The shift vector of every feature space (scores.SPACES): ``outs`` maps a space to its
    file; the SAE's from the extraction statistics, the others from its panel; "unaligned" (the
    authors' row-by-row shift, scores.unaligned) from ``unaligned``: the paired run's shard and
    panel, the plain run's shard and panel."""
    from stsflow.features.panel import read_prefix, read_space_stats
    from stsflow.scores.unaligned import unaligned_shift

    for space, out in outs.items():
        if space == "unaligned":
            width = Stats.read(icl_stats).width
            table = unaligned_shift(unaligned["shard"], read_prefix(unaligned["panel"], width),
                                    unaligned["plain_shard"],
                                    read_prefix(unaligned["plain_panel"], width), width,
                                    max_rows=unaligned_rows)
            write_parquet(table, out, dict(meta, space=space, max_rows=unaligned_rows))
            continue
        stats = Stats.read(icl_stats) if space == "sae" else read_space_stats(panel, space)
        write_parquet(scores.shift_table(stats), out, dict(meta, space=space,
                                                           n_tokens=stats.n_tokens))


def sts(shifts: dict, plain: dict, icl: dict, n_top: int, key: dict, out, *, oracle: bool,
        settings: dict) -> None:
    """One domain's row: every registered predictor (only those that read a shift vector for a
    true shift, ``oracle``), the size of D_N (``n_effective``) and, for a predicted shift, the
    random-dimension draws among the live dimensions and their number (``n_live``).

    ``shifts`` maps a space to its shift file; ``plain`` and ``icl`` map "stats" to the domain's
    SAE statistics and "panel" to its panel; ``plain`` also has "sft_panel", the SFT set's plain
    panel, "sft_stats", the SFT set's plain SAE statistics (a predicted shift's control),
    "sft_grad"/"domain_grad", the two corpora's mean gradients, and for a true shift
    "reps_base"/"reps_tuned", the domain's mean residual per layer before and after the
    fine-tuning (``features.reps``). ``settings``: control_seed, random_draws, probe_folds
    (sts.*)."""
    from stsflow.features.panel import read_space_stats
    from stsflow.scores.controls import random_dim_scores

    def spaces(side):
        return {sp: (Stats.read(side["stats"]) if sp == "sae"
                     else read_space_stats(side["panel"], sp)) for sp in scores.SPACES}

    x = scores.ScoreInputs(n_top=n_top,
                           shifts={sp: read_table(p) for sp, p in shifts.items()},
                           plain=spaces(plain), icl=spaces(icl), domain_panel=plain["panel"],
                           sft_panel=plain["sft_panel"],
                           sft_grad=plain.get("sft_grad"), domain_grad=plain.get("domain_grad"),
                           control_seed=settings["control_seed"],
                           probe_folds=settings["probe_folds"], layer=key.get("layer"),
                           reps_base=plain.get("reps_base"), reps_tuned=plain.get("reps_tuned"),
                           sft_plain=(Stats.read(plain["sft_stats"]) if "sft_stats" in plain
                                      else None))
    names = scores.oracle_predictors() if oracle else scores.pretraining_predictors()
    row = dict(key, n_top=n_top, **scores.score(x, names))
    if not oracle:
        row.update(random_dim_scores(x, settings["random_draws"]))
    write_parquet(pa.Table.from_pylist([row]), out, {"dims": x.dims("sae").tolist()})


# the STS table's leading columns: keys, one column per registered predictor, the token count and
# the random-dimension draws (lists); run keys (method, seed) follow
STS_COLUMNS = ["model", "layer", "sae", "sft", "domain", "n_top", *scores.pretraining_predictors(),
               "n_tokens", "n_effective", "n_live", "rand_act", "rand_icl"]


def sts_table(parts: list, out_parquet, out_csv, oracle: bool = False) -> None:
    """Concatenate STS rows; ``oracle`` rows (true shifted dimensions) get ``_oracle`` names."""
    import polars as pl

    df = pl.concat([read_frame(p) for p in parts], how="diagonal_relaxed")
    if oracle:
        df = df.rename({c: f"{c}_oracle" for c in scores.oracle_predictors()})
    keys = ["model", "sft", "layer", "sae", "n_top", "method", "seed", "domain"]
    df = df.sort([k for k in keys if k in df.columns])
    first = [c for c in STS_COLUMNS if c in df.columns]
    cols = first + [c for c in df.columns if c not in first]
    df = df.select(cols)
    write_parquet(df.to_arrow(), out_parquet)
    from stsflow.io.files import write_text

    # CSV has no list type: the random-dimension draws become ";"-separated numbers
    lists = [c for c, t in df.schema.items() if isinstance(t, pl.List)]
    write_text(out_csv, df.with_columns(
        pl.col(c).list.eval(pl.element().cast(pl.String)).list.join(";") for c in lists)
        .write_csv())


OBSERVED_COLUMNS = ["model", "sft", "method", "seed", "domain", "metric", "before", "after",
                    "delta", "abs_delta", "ci_low", "ci_high", "delta_se", "n_items"]


def observed_table(model: str, sft: str, base: dict, tuned: dict, out, out_csv,
                   n_boot: int) -> None:
    """Δ per (method, seed, domain, metric) with a paired bootstrap CI over items and the paired
    standard error of Δ (sd of the per-item differences / √n), which the report's noise ceiling
    uses.

    ``base`` maps domain -> base eval file; ``tuned`` maps (method, seed, domain) -> eval file."""
    import polars as pl

    from stsflow.analysis.observed import bootstrap_delta_ci, delta_se

    rows = []
    for (method, seed, domain), path in sorted(tuned.items()):
        before_df, after_df = read_frame(base[domain]), read_frame(path)
        for metric in sorted(set(after_df["metric"])):
            b = before_df.filter(pl.col("metric") == metric).sort("question_id")
            a = after_df.filter(pl.col("metric") == metric).sort("question_id")
            if b["question_id"].to_list() != a["question_id"].to_list():
                raise ValueError(f"{domain}/{metric}: base and tuned runs cover different items")
            bv, av = b["value"].to_numpy(), a["value"].to_numpy()
            lo, hi = bootstrap_delta_ci(bv, av, n_boot=n_boot, seed=seed)
            delta = float(av.mean() - bv.mean())
            rows.append({"model": model, "sft": sft, "method": method, "seed": seed,
                         "domain": domain, "metric": metric, "before": float(bv.mean()),
                         "after": float(av.mean()), "delta": delta, "abs_delta": abs(delta),
                         "ci_low": float(lo), "ci_high": float(hi),
                         "delta_se": delta_se(bv, av), "n_items": int(bv.size)})
    write_parquet(pa.Table.from_pylist(rows), out)
    from stsflow.io.files import write_text

    write_text(out_csv, pl.DataFrame(rows).write_csv())


OVERLAP_KEYS = ["model", "sft", "method", "seed", "layer", "sae", "n_top"]


def overlap_table(model: str, sft: str, predicted: dict, true: dict, n_tops: list[int],
                  out) -> None:
    """|D_N ∩ D_N^true| / N per (method, seed, layer, SAE, N), beside N / width, the dimensions
    each shift moves, the size of the smaller D_N (``n_effective``), the overlap expected by
    chance among the predicted moving dimensions, its exact permutation p and the reason where
    the overlap is NaN or a D_N holds fewer than N (``scores.shift.overlap_stats``).
    ``predicted`` maps (layer, sae, seed) -> shift file; ``true`` maps (method, seed, layer,
    sae) -> true shift file."""
    from stsflow.scores.shift import OVERLAP_COLUMNS, overlap_stats

    rows = []
    for (method, seed, layer, sae), path in sorted(true.items()):
        pred = read_table(predicted[(layer, sae, seed)])
        tru = read_table(path)
        for n in n_tops:
            rows.append({"model": model, "sft": sft, "method": method, "seed": seed,
                         "layer": layer, "sae": sae, "n_top": n,
                         **overlap_stats(pred, tru, n)})
    types = {"width": pa.int64(), "n_over_width": pa.float64(), "n_moving_predicted": pa.int64(),
             "n_moving_true": pa.int64(), "n_effective": pa.int64(), "overlap": pa.float64(),
             "overlap_chance": pa.float64(), "overlap_p": pa.float64(),
             "overlap_note": pa.string()}
    schema = pa.schema([(k, pa.string() if k in ("model", "sft", "method", "sae") else
                         pa.int64()) for k in OVERLAP_KEYS]
                       + [(c, types[c]) for c in OVERLAP_COLUMNS])
    write_parquet(pa.Table.from_pylist(rows, schema=schema), out)


COVERAGE_COLUMNS = ["model", "sft", "corpus", "kind", "step", "mode", "n_items", "n_used",
                    "n_truncated", "share_truncated", "counted_tokens", "turn_tokens",
                    "context_limit", "n_context_overflow", "share_context_overflow"]


def coverage_table(model: str, sft: str, extractions: dict, finetunes: dict, out,
                   out_csv) -> None:
    """What the numbers rest on, per corpus and extraction run (``mode``): queries available and
    used, the share cut by ``max_length`` at extraction, counted vs all query tokens, and the
    share of queries whose prefix + query exceeds the model's context (``context_limit``; only
    where sts.context_check: warn let the run go on: the model then runs past its trained
    positions, or, beyond a sliding window, the query no longer sees the first demonstrations;
    null for a shard written before it was recorded); per fine-tuning run, the share of SFT
    examples whose answer ``finetune.max_length`` cut. ``extractions`` maps (kind, corpus,
    mode) — or (kind, corpus), a plain run — to an extraction's statistics file;
    ``finetunes`` maps a run name to its history."""
    import polars as pl

    from stsflow.io.files import write_text

    rows = []
    for key, path in sorted(extractions.items()):
        kind, corpus = key[:2]
        meta = read_metadata(path)
        mode = key[2] if len(key) > 2 else meta.get("mode", "plain")
        sel = meta.get("selection") or {}
        n_used = int(sel.get("n_selected", meta.get("n_queries", 0)))
        n_cut = int(sel.get("n_truncated", 0))
        context = (meta.get("context") or {})
        own = (context.get("runs") or {}).get(mode)
        n_over = int(own["n_overflow"]) if own else None
        n_queries = int(own["n_queries"]) if own else None
        rows.append({"model": model, "sft": sft, "corpus": corpus, "kind": kind,
                     "step": "extraction", "mode": mode,
                     "n_items": int(sel.get("n_available", n_used)),
                     "n_used": n_used, "n_truncated": n_cut,
                     "share_truncated": n_cut / max(n_used, 1),
                     "counted_tokens": int(meta["n_tokens"]),
                     "turn_tokens": int(meta.get("n_query_tokens", meta["n_tokens"])),
                     "context_limit": context.get("limit", sel.get("context_limit")),
                     "n_context_overflow": n_over,
                     "share_context_overflow": (n_over / max(n_queries, 1)
                                                if n_over is not None else None)})
    for run, path in sorted(finetunes.items()):
        meta = read_metadata(path)
        n_cut = int(meta.get("n_answer_cut", 0))
        n_used = int(meta.get("n_examples", 0))  # records left with a response token
        rows.append({"model": model, "sft": sft, "corpus": sft, "kind": "sft",
                     "step": f"finetune {run}", "mode": None,
                     "n_items": int(meta.get("n_records", n_used)),
                     "n_used": n_used,
                     "n_truncated": n_cut, "share_truncated": float(meta.get(
                         "share_answer_cut", n_cut / max(n_used, 1))),
                     "counted_tokens": None, "turn_tokens": None, "context_limit": None,
                     "n_context_overflow": None, "share_context_overflow": None})
    strings = ("model", "sft", "corpus", "kind", "step", "mode")
    floats = ("share_truncated", "share_context_overflow")
    df = pl.DataFrame(rows, schema={c: (pl.String if c in strings
                                        else pl.Float64 if c in floats else pl.Int64)
                                    for c in COVERAGE_COLUMNS})
    write_parquet(df.to_arrow(), out)
    write_text(out_csv, df.write_csv())
