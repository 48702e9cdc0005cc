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
from stsflow.extract import Stats
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

def materialize_sft(spec: dict, out: Path | str) -> None:
    records = corpora.load_corpus(spec["source"], spec["schema"], spec["fields"],
                                  spec.get("max_items"))
    if not records:
        raise ValueError(f"SFT source {spec['source']} gave no records")
    corpora.write_records(records, out, {"source": spec["source"], "schema": spec["schema"],
                                         "n_records": len(records)})


def materialize_domain(spec: dict, out_test: Path | str, out_demos: Path | str) -> None:
    for part, out, limit in (("test", out_test, spec.get("max_items")),
                             ("demos", out_demos, None)):
        records = corpora.load_corpus(spec[part], spec["schema"], spec["fields"], limit)
        if not records:
            raise ValueError(f"domain {part} source {spec[part]} gave no records")
        corpora.write_records(records, out, {"source": spec[part], "schema": spec["schema"],
                                             "n_records": len(records)})


# -- models and SAEs ----------------------------------------------------------------------------

def prepare_model(spec: dict, outdir: Path | str) -> None:
    from stsflow.models import prepare_model as prep

    info = prep(spec, outdir)
    log.info("prepared model: %s", json.dumps(info))


def sae_training_windows(tokenizer, segmenter, corpus_files: list[tuple[str, str]],
                         context_length: int) -> list[list[int]]:
    """Token windows of the SAE training text: every record rendered as a full exchange."""
    windows = []
    for kind, path in corpus_files:
        for rec in corpora.read_records(path):
            ids = segmenter.head() + segmenter.demo(rec, kind)
            windows += [ids[i:i + context_length] for i in range(0, len(ids), context_length)
                        if len(ids[i:i + context_length]) >= 8]
    if not windows:
        raise ValueError("no SAE training text")
    return windows


def prepare_sae(model_dir, mspec: dict, layer: int, sae_spec: dict, corpus_files, outdir,
                threads: int | None = None) -> None:
    from stsflow import sae as sae_mod
    from stsflow.segments import Segmenter

    if "train" not in sae_spec:
        sae_mod.prepare_pretrained(sae_spec, outdir)
        return
    model, tok, info = _load(model_dir, mspec, threads)
    seg = Segmenter.for_tokenizer(tok, mspec["chat_template"])
    spec = sae_spec["train"]
    windows = sae_training_windows(tok, seg, corpus_files, spec["context_length"])
    device = str(next(model.parameters()).device)
    sae_mod.train_sae(model, layer, windows, spec, outdir, d_in=info["hidden_size"],
                      device=device, model_batch=mspec["batch_size"], log=log.info)


# -- extraction ---------------------------------------------------------------------------------

def sft_demo_indices(n_records: int, t: int, seed: int) -> list[int]:
    """The t demonstrations of an SFT set for a seed (excluded from the ICL queries)."""
    return sorted(random.Random(seed).sample(range(n_records), t))


def build_queries(seg, records: list[dict], kind: str, budget: int, max_len: int):
    from stsflow.extract import select_queries

    return select_queries([(i, seg.query(r, kind)) for i, r in enumerate(records)], budget,
                          max_len)


def extract(model_dir, sae_dir, mspec: dict, layer: int, kind: str, mode: str, data: dict,
            sts: dict, out, stats_out, reference=None, provenance: dict | None = None,
            threads: int | None = None) -> None:
    """One (model, layer, corpus, mode) extraction.

    ``kind`` is "sft" or "domain"; ``mode`` is "plain", "icl" (domain: its m worked examples) or
    "icl-s<seed>" (SFT: t demonstrations drawn with the seed). ``data`` maps "sft_items" (SFT) or
    "test"/"demos" (domain) to materialised Parquet files."""
    from stsflow import extract as ex
    from stsflow.sae import load_sae
    from stsflow.segments import Segmenter

    model, tok, minfo = _load(model_dir, mspec, threads)
    sae, sinfo = load_sae(sae_dir, device=str(next(model.parameters()).device))
    seg = Segmenter.for_tokenizer(tok, mspec["chat_template"])
    records = corpora.read_records(data["sft_items"] if kind == "sft" else data["test"])
    budget = sts["sft_tokens"] if kind == "sft" else sts["domain_tokens"]
    queries = build_queries(seg, records, kind, budget, mspec["max_length"])
    demo_ids: list = []
    if mode == "plain":
        prefix = seg.head()
    elif kind == "domain":
        demos = corpora.read_records(data["demos"])[: sts["m"]]
        demo_ids = [d["question_id"] for d in demos]
        prefix = seg.context(demos, kind)
    else:
        seed = int(mode.split("-s")[1])
        idx = sft_demo_indices(len(records), sts["t"], seed)
        demo_ids = [records[i]["id"] for i in idx]
        prefix = seg.context([records[i] for i in idx], kind)
        queries = [q for q in queries if q[0] not in set(idx)]
    meta = dict(provenance or {}, model=_model_identity(minfo), sae=_sae_identity(sinfo),
                dtype=mspec["dtype"], chat_template=mspec["chat_template"],
                prompt_head=seg.layout.head, mode=mode, kind=kind, demonstrations=demo_ids,
                dataset=read_metadata(data["sft_items"] if kind == "sft" else data["test"]),
                packages=package_versions())
    ex.extract(model, sae, layer, queries, prefix, out, stats_out,
               batch_size=mspec["batch_size"], feat_dtype=sts["feat_dtype"], reference=reference,
               metadata=meta, row_group_rows=sts["row_group_rows"], log=log.info)


def _model_identity(info: dict) -> dict:
    keys = ("kind", "id", "package", "file", "revision", "sha256", "architecture", "n_layers")
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


STS_COLUMNS = ["model", "layer", "sft", "domain", "n_top", "sts_act", "sts_icl", "sts_sq",
               "n_tokens"]


def sts_table(parts: list, out_parquet, out_csv) -> None:
    import polars as pl

    df = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    keys = ["model", "sft", "layer", "n_top", "seed", "domain"]
    df = df.sort([k for k in keys if k in df.columns])
    cols = STS_COLUMNS + [c for c in df.columns if c not in STS_COLUMNS]
    df = df.select(cols)
    write_parquet(df.to_arrow(), out_parquet)
    from stsflow.storage import write_text

    write_text(out_csv, df.write_csv())


def observed_from_config(config: dict, model: str, sft: str) -> list[dict]:
    rows = []
    for obs in config.get("observed", []):
        if obs["model"] == model and obs["sft"] == sft:
            rows += [{"model": model, "sft": sft, "domain": d, "metric": obs["metric"],
                      "delta": float(v)} for d, v in obs["deltas"].items()]
    return rows


def report(sts_path, observed_rows: list[dict], observed_tables: list, outdir, *, title: str,
           report_cfg: dict, provenance: dict) -> None:
    import polars as pl

    from stsflow import stats as st
    from stsflow.report import write_report

    sts_df = pl.read_parquet(sts_path)
    frames = [pl.DataFrame(observed_rows)] if observed_rows else []
    frames += [pl.read_parquet(p) for p in observed_tables]
    if not frames:
        raise ValueError("no observed accuracy changes: give observed: in the config or enable "
                         "fine-tuning")
    observed = pl.concat(frames, how="diagonal_relaxed")
    corr = st.correlation_table(sts_df, observed, n_boot=report_cfg["n_boot"],
                                n_perm=report_cfg["n_perm"], seed=report_cfg["seed"])
    write_report(corr, sts_df, observed, Path(outdir), title=title, provenance=provenance)
