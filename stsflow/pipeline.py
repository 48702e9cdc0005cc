"""Job bodies: what each workflow rule does, as plain functions of paths and config slices.

Rules call these through the thin scripts in ``workflow_scripts/``; tests call them directly.
Each job receives only its own slice of the config, so adding a domain never changes the inputs or
parameters of another domain's jobs.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stsflow import corpora, scores
from stsflow.featstats import Stats
from stsflow.storage import package_versions, read_metadata, write_parquet

log = logging.getLogger("stsflow")


def setup_logging(log_path: str | None = None) -> None:
    """Job log: progress lines to the rule's log file (and stderr)."""
    handlers = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")


def _load(model_dir, mspec, threads: int | None = None):
    import torch

    from stsflow.models import load_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    return load_model(model_dir, mspec["dtype"], mspec["device"])


# -- data ---------------------------------------------------------------------------------------

def _materialize(source: dict, spec: dict, limit: int | None, out, what: str) -> None:
    records = corpora.load_corpus(source, spec["schema"], spec["fields"])
    records, sample = corpora.sample_records(records, limit, spec.get("sample_seed", 0))
    if not records:
        raise ValueError(f"{what} source {source} gave no records")
    corpora.write_records(records, out, {"source": source, "schema": spec["schema"],
                                         "n_records": len(records), "sample": sample})


def materialize_sft(spec: dict, out: Path | str) -> None:
    _materialize(spec["source"], spec, spec.get("max_items"), out, "SFT")


def materialize_domain(spec: dict, out_test: Path | str, out_demos: Path | str) -> None:
    """The test split (``max_items``: a seeded sample) and the demonstration split (whole: its
    first m items are the worked examples)."""
    _materialize(spec["test"], spec, spec.get("max_items"), out_test, "domain test")
    _materialize(spec["demos"], spec, None, out_demos, "domain demos")


# -- models and SAEs ----------------------------------------------------------------------------

def prepare_model(spec: dict, outdir: Path | str) -> None:
    from stsflow.models import prepare_model as prep

    info = prep(spec, outdir)
    log.info("prepared model: %s", json.dumps(info))


def sae_training_windows(tokenizer, segmenter, corpus_files: list[tuple[str, str]],
                         context_length: int, by_record: bool = False) -> list:
    """Token windows of the SAE training text: every record rendered as a full exchange after
    the chat head, as ``(ids, skip)`` with the head positions to skip (see sae.py). With
    ``by_record``, one list of windows per record (a held-out split must keep a record's windows
    together: a long solution is cut into several)."""
    records = []
    head = segmenter.head()
    for kind, path in corpus_files:
        for rec in corpora.read_records(path):
            body = segmenter.demo(rec, kind)
            pieces = [body[i:i + context_length] for i in range(0, len(body), context_length)]
            windows = [(head + p, len(head)) for p in pieces if len(p) >= 8]
            if windows:
                records.append(windows)
    if not records:
        raise ValueError("no SAE training text")
    return records if by_record else [w for windows in records for w in windows]


def prepare_sae(model_dir, mspec: dict, layer: int, sae_spec: dict, corpora_files: dict,
                plan: dict, outdir, *, where: str, threads: int | None = None,
                n_top: list[int] | None = None) -> None:
    """Fetch (registry), check (registry, local) or train the SAE of one layer, then measure its
    quality on held-out corpus tokens (see stsflow.sae).

    ``corpora_files`` maps a corpus name to ``(kind, materialised file)``; ``plan`` names the
    corpora that train (``train``, empty for pretrained SAEs) and evaluate it (``eval``).
    ``where`` is the SAE's config entry for error messages; ``n_top`` the STS sizes to check
    against a registry SAE's width (the registry YAML does not carry widths)."""
    from stsflow import sae as sae_mod
    from stsflow.models import model_info
    from stsflow.segments import Segmenter

    minfo = model_info(model_dir)
    fetched = None
    if "train" not in sae_spec:  # refused before the model is loaded or weights are fetched
        fetched = sae_mod.fetch_pretrained(sae_spec, layer=layer,
                                           hidden_size=minfo["hidden_size"], where=where,
                                           n_top=n_top)
    model, tok, info = _load(model_dir, mspec, threads)
    seg = Segmenter.for_tokenizer(tok, mspec["chat_template"])
    spec = sae_spec.get("train")
    context = spec["context_length"] if spec else sae_mod.EVAL_CONTEXT
    pool = {name: sae_training_windows(tok, seg, [corpora_files[name]], context, by_record=True)
            for name in dict.fromkeys(plan["train"] + plan["eval"])}
    held_out, train_windows = sae_mod.split_held_out(
        pool, plan["eval"], plan["train"], sae_spec["eval_tokens"], spec["seed"] if spec else 0)
    log.info("SAE L%d: %d held-out windows from %s", layer, len(held_out), plan["eval"])
    device = str(next(model.parameters()).device)
    provenance = {"eval_corpora": plan["eval"], "eval_windows": len(held_out)}
    if spec:
        if not train_windows:
            raise ValueError(f"{where}.train.corpora: {len(held_out)} token window(s), too few "
                             "to train an SAE and hold some out. Fix: add corpora")
        sae_mod.train_sae(model, layer, train_windows, spec, outdir, d_in=info["hidden_size"],
                          device=device, held_out=held_out, model_batch=mspec["batch_size"],
                          provenance=provenance, log=log.info)
    else:
        configured = info.get("id") or info.get("file") or Path(info.get("path", "")).name
        sae_mod.prepare_pretrained(*fetched, outdir, model=model, layer=layer, held_out=held_out,
                                   configured_model=configured, device=device,
                                   model_batch=mspec["batch_size"], provenance=provenance,
                                   log=log.info)


# -- extraction ---------------------------------------------------------------------------------

def sft_demo_indices(n_records: int, t: int, seed: int) -> list[int]:
    """The t demonstrations of an SFT set for a seed (excluded from the ICL queries)."""
    return sorted(random.Random(seed).sample(range(n_records), t))


def build_queries(seg, records: list[dict], kind: str, sts: dict, max_len: int):
    """The queries of a corpus as ``(doc_id, ids, counted)``, sampled per ``sts`` (budget,
    ``sample_seed``, ``query_tokens``), and the selection summary (see extract.select_queries)."""
    from stsflow.extract import select_queries

    content = sts["query_tokens"] == "content"
    queries = []
    for i, rec in enumerate(records):
        if content:
            ids, counted = seg.query_parts(rec, kind)
        else:
            ids = seg.query(rec, kind)
            counted = [True] * len(ids)
        queries.append((i, ids, counted))
    budget = sts["sft_tokens"] if kind == "sft" else sts["domain_tokens"]
    return select_queries(queries, budget, max_len, sts["sample_seed"])


def demonstration_context(seg, mode, kind: str, records: list[dict], data: dict, sts: dict):
    """``(prefix ids, demonstration ids, excluded query indices)`` of an extraction mode: the
    chat head alone (plain, tuned), head + the domain's first m worked examples, or head + t SFT
    demonstrations drawn with the mode's seed (which then leave the queries). The tuned model of
    seed s runs on the queries of icl-s<s> (its t demonstrations left out too), so the true and
    the predicted shift of a seed average over the same tokens."""
    if mode.demonstrations == "none":
        excluded = (set(sft_demo_indices(len(records), sts["t"], mode.seed))
                    if mode.tuned_model else set())
        return seg.head(), [], excluded
    if mode.demonstrations == "domain":
        demos = corpora.read_records(data["demos"])[: sts["m"]]
        return seg.context(demos, kind), [d["question_id"] for d in demos], set()
    idx = sft_demo_indices(len(records), sts["t"], mode.seed)
    return (seg.context([records[i] for i in idx], kind), [records[i]["id"] for i in idx],
            set(idx))


class ContextError(ValueError):
    pass


def check_context(limit: int | None, why: str, prefixes: dict[str, int], longest_query: int,
                  where: str, knob: str, model: str = "<model>", action: str = "error"
                  ) -> list[str]:
    """Head + demonstrations + the longest query must fit the model's context (SPEC §3 assumes
    every query token sees every demonstration). ``prefixes`` maps a run to its prefix length.
    ``action`` "error" raises ContextError; "warn" (sts.context_check) returns the problems, which
    the shard then records."""
    problems = []
    for run, n_prefix in prefixes.items():
        if limit and n_prefix + longest_query > limit:
            problems.append(
                f"{where}: the {run} input does not fit the model's context: prefix (head + "
                f"demonstrations) {n_prefix} tokens + longest query {longest_query} tokens = "
                f"{n_prefix + longest_query} > {limit} ({why}). Fix: lower {knob} (fewer "
                f"demonstrations), or models.{model}.max_length (queries are cut to it), or "
                "shorten the demonstrations in the data; sts.context_check: warn goes on anyway")
    if problems and action == "error":
        raise ContextError("\n".join(problems))
    for p in problems:
        log.warning(p)
    return problems


def extract(model_dir, sae_dir, mspec: dict, layer: int, kind: str, mode, data: dict,
            sts: dict, out, stats_out, reference=None, provenance: dict | None = None,
            threads: int | None = None, corpus: str | None = None,
            model_name: str | None = None) -> None:
    """One (model, layer, corpus, mode) extraction; ``mode`` a ``stsflow.mode.Mode`` or its
    string. ``kind`` is "sft" or "domain"; ``data`` maps "sft_items" (SFT) or "test"/"demos"
    (domain) to materialised Parquet files. The context check runs on the tokenizer alone,
    before the model is loaded; a domain's plain run checks its ICL prefix too, so a domain
    whose demonstrations cannot fit fails at its first job."""
    from stsflow import extract as ex
    from stsflow.mode import Mode
    from stsflow.models import context_limit, load_tokenizer
    from stsflow.sae import load_sae
    from stsflow.segments import Segmenter

    mode = Mode.parse(str(mode))
    mode.check_corpus(kind)
    corpus = corpus or (provenance or {}).get("corpus", "?")
    tok, model_cfg = load_tokenizer(model_dir)
    seg = Segmenter.for_tokenizer(tok, mspec["chat_template"])
    records = corpora.read_records(data["sft_items"] if kind == "sft" else data["test"])
    queries, selection = build_queries(seg, records, kind, sts, mspec["max_length"])
    prefix, demo_ids, excluded = demonstration_context(seg, mode, kind, records, data, sts)
    queries = [q for q in queries if q[0] not in excluded]
    if not queries:
        raise ValueError(f"{corpus}: no query left to extract")
    prefixes = {str(mode): len(prefix)}
    if kind == "domain" and mode.kind == "plain":
        prefixes[str(Mode.domain_icl())] = len(
            demonstration_context(seg, Mode.domain_icl(), kind, records, data, sts)[0])
    limit, why = context_limit(model_cfg, layer)
    where = f"sft.{corpus}" if kind == "sft" else f"domains.{corpus}"
    overflow = check_context(limit, why, prefixes, max(len(q[1]) for q in queries), where,
                             "sts.t" if kind == "sft" else "sts.m", model_name or "<model>",
                             sts.get("context_check", "error"))

    model, tok, minfo = _load(model_dir, mspec, threads)
    sae, sinfo = load_sae(sae_dir, device=str(next(model.parameters()).device))
    meta = dict(provenance or {}, model=_model_identity(minfo), sae=_sae_identity(sinfo),
                dtype=mspec["dtype"], chat_template=mspec["chat_template"],
                prompt_head=seg.layout.head, mode=str(mode), demonstrations_from=mode.demonstrations,
                kind=kind, demonstrations=demo_ids, query_tokens=sts["query_tokens"],
                selection=dict(selection, context_limit=limit), context_overflow=overflow,
                dataset=read_metadata(data["sft_items"] if kind == "sft" else data["test"]),
                packages=package_versions())
    ex.extract(model, sae, layer, queries, prefix, out, stats_out,
               batch_size=mspec["batch_size"], feat_dtype=sts["feat_dtype"], reference=reference,
               metadata=meta, row_group_rows=sts["row_group_rows"], log=log.info)


def _model_identity(info: dict) -> dict:
    keys = ("kind", "id", "package", "file", "revision", "sha256", "architecture", "n_layers",
            "base", "method", "seed")  # the last three: a fine-tuned checkpoint's origin
    return {k: info[k] for k in keys if k in info}


def _sae_identity(info: dict) -> dict:
    keys = ("kind", "release", "sae_id", "hook_name", "width", "architecture", "train",
            "fraction_variance_explained")
    return {k: info[k] for k in keys if k in info}


# -- reductions ---------------------------------------------------------------------------------

def shift(icl_stats, out, meta: dict) -> None:
    table = scores.shift_table(Stats.read(icl_stats))
    write_parquet(table, out, dict(meta, n_tokens=Stats.read(icl_stats).n_tokens))


def sts(shift_path, plain_stats, icl_stats, n_top: int, key: dict, out) -> None:
    dims = scores.top_dims(pq.read_table(shift_path), n_top)
    row = dict(key, n_top=n_top, **scores.sts_scores(dims, Stats.read(plain_stats),
                                                     Stats.read(icl_stats)))
    write_parquet(pa.Table.from_pylist([row]), out, {"dims": dims.tolist()})


STS_COLUMNS = ["model", "layer", "sft", "domain", "n_top", *scores.PREDICTORS,
               "n_tokens"]


def sts_table(parts: list, out_parquet, out_csv, oracle: bool = False) -> None:
    """Concatenate STS rows; ``oracle`` rows (true shifted dimensions) get ``_oracle`` names."""
    import polars as pl

    df = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    if oracle:
        df = df.rename({c: f"{c}_oracle" for c in scores.PREDICTORS})
    keys = ["model", "sft", "layer", "n_top", "method", "seed", "domain"]
    df = df.sort([k for k in keys if k in df.columns])
    first = [c for c in STS_COLUMNS if c in df.columns]
    cols = first + [c for c in df.columns if c not in first]
    df = df.select(cols)
    write_parquet(df.to_arrow(), out_parquet)
    from stsflow.storage import write_text

    write_text(out_csv, df.write_csv())


def report(sts_path, config_rows: list[dict], outdir, *, title: str, report_cfg: dict,
           provenance: dict, primary: dict | None = None, observed=None, sts_oracle=None,
           overlap=None, coverage=None, sae_dirs: dict | None = None) -> None:
    """Correlate STS (and oracle STS) with observed changes: from the config (``config_rows``)
    and/or from this workflow's fine-tuning runs (``observed`` table). ``primary`` is the resolved
    pre-declared primary analysis (stats.resolve_primary); every other tested row is exploratory,
    Holm-adjusted within its family."""
    import polars as pl

    from stsflow import stats as st
    from stsflow.report import write_report

    kw = dict(n_boot=report_cfg["n_boot"], n_perm=report_cfg["n_perm"], seed=report_cfg["seed"])
    sts_df = pl.read_parquet(sts_path)
    corr, obs_frames, sts_frames = [], [], [sts_df]
    if config_rows:
        given = pl.DataFrame(config_rows)
        obs_frames.append(given)
        corr.append(st.correlation_table(sts_df, given, **kw))
    if observed is not None:
        tuned = pl.read_parquet(observed)
        tuned = tuned.select(c for c in ("model", "sft", "method", "seed", "domain", "metric",
                                         "delta", "delta_se", "ci_low", "ci_high")
                             if c in tuned.columns)
        obs_frames.append(tuned)
        corr.append(st.correlation_table(sts_df, tuned, **kw))
        if sts_oracle is not None:
            oracle = pl.read_parquet(sts_oracle)
            sts_frames.append(oracle)
            corr.append(st.correlation_table(oracle, tuned, **kw))
    if not corr:
        raise ValueError("no observed accuracy changes: give observed: in the config or enable "
                         "finetune")
    extra = [("Overlap of predicted and true shifted dimensions |D_N ∩ D_N^true| / N",
              pl.read_parquet(overlap))] if overlap is not None else []
    warnings: list[str] = []
    if sae_dirs:
        quality, warnings = sae_quality_table(sae_dirs)
        extra.insert(0, ("SAE quality on held-out tokens of this model (L0, fraction of variance "
                         "explained, next-token loss recovered with the SAE spliced in)", quality))
        provenance = dict(provenance, sae_warnings=warnings or "none")
    if coverage is not None:
        extra.append(("Coverage: queries used and cut by max_length per corpus (extraction), "
                      "SFT answers cut by finetune.max_length (fine-tuning)",
                      pl.read_parquet(coverage).drop("model", "sft")))
    corr = pl.concat(corr, how="diagonal_relaxed")
    keys = ["model", "sft", "layer", "n_top", "variant", "target", "protocol", "metric",
            "method", "seed"]
    corr = corr.select([c for c in keys if c in corr.columns] + list(st.STAT_COLUMNS)
                       + list(st.ROW_COLUMNS))
    corr = st.assign_roles(corr, primary)
    write_report(corr,
                 pl.concat(sts_frames, how="diagonal_relaxed"),
                 pl.concat(obs_frames, how="diagonal_relaxed"), Path(outdir), title=title,
                 provenance=provenance, primary=primary, extra_tables=extra,
                 warnings=[f"SAE {w}" for w in warnings])


# -- validation loop: fine-tune, evaluate, observed shift ---------------------------------------

def finetune(model_dir, mspec: dict, sft_items, recipe: dict, method: str, seed: int, outdir,
             history_out, threads: int | None = None) -> None:
    """Fine-tune the base model on an SFT set and save an atomic checkpoint plus its history."""
    import shutil
    import time

    from stsflow import finetune as ft

    model, tok, minfo = _load(model_dir, mspec, threads)
    records = corpora.read_records(sft_items)
    # max_items: a seeded sample (sts.sample_seed, as every budget), not the first rows of the set
    records, sample = corpora.sample_records(records, recipe.get("max_items"),
                                             recipe.get("sample_seed", 0))
    keys = set(ft.FinetuneConfig.__dataclass_fields__) - {"method", "seed"}
    cfg = ft.FinetuneConfig(method=method, seed=seed,
                            **{k: (tuple(v) if isinstance(v, list) else v)
                               for k, v in recipe.items() if k in keys})
    start = time.time()
    result = ft.finetune(model, tok, records, cfg, use_chat_template=mspec["chat_template"],
                         log=log.info)
    history = pa.table({"step": np.arange(1, len(result["losses"]) + 1, dtype=np.int32),
                        "loss": result["losses"], "lr": result["lrs"],
                        "grad_norm": result["grad_norms"]})
    meta = {"base": _model_identity(minfo), "method": method, "seed": seed,
            "recipe": {k: v for k, v in cfg.__dict__.items()}, "n_examples": result["n_examples"],
            "sample": sample, "n_answer_cut": result["n_answer_cut"],
            "n_records": result["n_records"],
            "share_answer_cut": round(result["n_answer_cut"] / max(result["n_records"], 1), 4),
            "n_steps": result["n_steps"], "tokens_seen": result["tokens_seen"],
            "seconds": round(time.time() - start, 1), "packages": package_versions()}
    outdir = Path(outdir)
    if outdir.exists():  # Snakemake may pre-create the directory; a checkpoint is never reused
        shutil.rmtree(outdir)
    ft.save_checkpoint(result["model"], tok, outdir, meta)
    write_parquet(history, history_out, meta)


def evaluate(model_dir, mspec: dict, test_path, demos_path, ev: dict, variant: dict, out,
             subject: str | None = None, threads: int | None = None) -> None:
    """Evaluate one model variant on one domain with every configured metric; per-item rows."""
    from stsflow import evaluate as ev_mod
    from stsflow.segments import Segmenter

    model, tok, _ = _load(model_dir, mspec, threads)
    seg = Segmenter.for_tokenizer(tok, mspec["chat_template"])
    items, demos = corpora.read_records(test_path), corpora.read_records(demos_path)
    rows = []
    for metric in ev["metrics"]:  # each a registered metric (evaluate.METRICS)
        res = ev_mod.METRICS[metric].run(model, tok, items, demos, segmenter=seg, settings=ev,
                                         subject=subject, chat_template=mspec["chat_template"])
        values = ev_mod.item_values(res, metric)
        summary = ev_mod.accuracy_table(res, metric)
        log.info("%s %s: %s", variant, metric, summary)
        for r, v in zip(res, values):
            rows.append({"question_id": int(r["question_id"]), "metric": metric,
                         "value": float(v), "detail": json.dumps(r, default=str)})
    write_parquet(pa.Table.from_pylist(rows), out, {"variant": variant, "evaluate": ev})


OBSERVED_COLUMNS = ["model", "sft", "method", "seed", "domain", "metric", "before", "after",
                    "delta", "abs_delta", "ci_low", "ci_high", "delta_se", "n_items"]


def observed_table(model: str, sft: str, base: dict, tuned: dict, out, out_csv,
                   n_boot: int) -> None:
    """Δ per (method, seed, domain, metric) with a paired bootstrap CI over items and the paired
    standard error of Δ (sd of the per-item differences / √n), which the report's noise ceiling
    uses.

    ``base`` maps domain -> base eval file; ``tuned`` maps (method, seed, domain) -> eval file."""
    import polars as pl

    from stsflow.evaluate import bootstrap_delta_ci
    from stsflow.stats import delta_se

    rows = []
    for (method, seed, domain), path in sorted(tuned.items()):
        before_df, after_df = pl.read_parquet(base[domain]), pl.read_parquet(path)
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
    from stsflow.storage import write_text

    write_text(out_csv, pl.DataFrame(rows).write_csv())


def overlap_table(model: str, sft: str, predicted: dict, true: dict, n_tops: list[int],
                  out) -> None:
    """|D_N ∩ D_N^true| / N per (method, seed, layer, N). ``predicted`` maps (layer, seed) ->
    shift file; ``true`` maps (method, seed, layer) -> true shift file."""
    rows = []
    for (method, seed, layer), path in sorted(true.items()):
        pred = pq.read_table(predicted[(layer, seed)])
        tru = pq.read_table(path)
        for n in n_tops:
            rows.append({"model": model, "sft": sft, "method": method, "seed": seed,
                         "layer": layer, "n_top": n, "overlap": scores.overlap(pred, tru, n)})
    write_parquet(pa.Table.from_pylist(rows), out)


def sae_quality_table(sae_dirs: dict):
    """(table, warnings): one row per layer's SAE with its identity and quality figures, and
    every warning of its preparation (poor figures, declared model, accepted hook) as text."""
    import polars as pl

    from stsflow.sae import quality_summary

    rows, warnings = [], []
    for layer, path in sorted(sae_dirs.items()):
        q = quality_summary(path)
        ident = (f"{q['release']}/{q['sae_id']}" if q.get("kind") == "registry"
                 else q.get("path") if q.get("kind") == "local" else "trained here")
        rows.append({"layer": int(layer), "sae": ident, "hook": q.get("hook_name"),
                     "width": q.get("width"), "l0": q.get("l0"),
                     "variance_explained": q.get("fraction_variance_explained"),
                     "loss_recovered": q.get("loss_recovered"), "ce_clean": q.get("ce_clean"),
                     "ce_with_sae": q.get("ce_with_sae"),
                     "ce_zero_ablation": q.get("ce_zero_ablation"),
                     "eval_tokens": q.get("eval_tokens"),
                     "warnings": "; ".join(w["kind"] for w in q["warnings"]) or "none"})
        warnings += [f"L{layer}: {w['message']}" for w in q["warnings"]]
    return pl.DataFrame(rows), warnings


COVERAGE_COLUMNS = ["model", "sft", "corpus", "kind", "step", "n_items", "n_used",
                    "n_truncated", "share_truncated", "counted_tokens", "turn_tokens"]


def coverage_table(model: str, sft: str, extractions: dict, finetunes: dict, out,
                   out_csv) -> None:
    """What the numbers rest on, per corpus: queries available and used, the share cut by
    ``max_length`` at extraction, counted vs all query tokens; per fine-tuning run, the share of
    SFT examples whose answer ``finetune.max_length`` cut. ``extractions`` maps (kind, corpus)
    to a plain extraction's statistics file; ``finetunes`` maps a run name to its history."""
    import polars as pl

    from stsflow.storage import write_text

    rows = []
    for (kind, corpus), path in sorted(extractions.items()):
        meta = read_metadata(path)
        sel = meta.get("selection") or {}
        n_used = int(sel.get("n_selected", meta.get("n_queries", 0)))
        n_cut = int(sel.get("n_truncated", 0))
        rows.append({"model": model, "sft": sft, "corpus": corpus, "kind": kind,
                     "step": "extraction", "n_items": int(sel.get("n_available", n_used)),
                     "n_used": n_used, "n_truncated": n_cut,
                     "share_truncated": n_cut / max(n_used, 1),
                     "counted_tokens": int(meta["n_tokens"]),
                     "turn_tokens": int(meta.get("n_query_tokens", meta["n_tokens"]))})
    for run, path in sorted(finetunes.items()):
        meta = read_metadata(path)
        n_cut = int(meta.get("n_answer_cut", 0))
        n_used = int(meta.get("n_examples", 0))  # records left with a response token
        rows.append({"model": model, "sft": sft, "corpus": sft, "kind": "sft",
                     "step": f"finetune {run}", "n_items": int(meta.get("n_records", n_used)),
                     "n_used": n_used,
                     "n_truncated": n_cut, "share_truncated": float(meta.get(
                         "share_answer_cut", n_cut / max(n_used, 1))),
                     "counted_tokens": None, "turn_tokens": None})
    df = pl.DataFrame(rows, schema={c: (pl.String if c in ("model", "sft", "corpus", "kind",
                                                             "step")
                                        else pl.Float64 if c == "share_truncated" else pl.Int64)
                                    for c in COVERAGE_COLUMNS})
    write_parquet(df.to_arrow(), out)
    write_text(out_csv, df.write_csv())
