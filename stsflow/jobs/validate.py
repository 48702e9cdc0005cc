"""FIXME-DOC jobs/validate (from pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from stsflow.data import corpora
from stsflow.io.files import package_versions, write_parquet
from stsflow.jobs.common import _load, _model_identity, log

# -- validation loop: fine-tune, evaluate, observed shift ---------------------------------------

def finetune(model_dir, mspec: dict, sft_items, recipe: dict, method: str, seed: int, outdir,
             history_out, threads: int | None = None) -> None:
    """Fine-tune the base model on an SFT set and save an atomic checkpoint plus its history."""
    import shutil
    import time

    from stsflow.finetune import checkpoint, train

    model, tok, minfo = _load(model_dir, mspec, threads)
    records = corpora.read_records(sft_items)
    # max_items: a seeded sample (sts.sample_seed, as every budget), not the first rows of the set
    records, sample = corpora.sample_records(records, recipe.get("max_items"),
                                             recipe.get("sample_seed", 0))
    keys = set(train.FinetuneConfig.__dataclass_fields__) - {"method", "seed"}
    cfg = train.FinetuneConfig(method=method, seed=seed,
                            **{k: (tuple(v) if isinstance(v, list) else v)
                               for k, v in recipe.items() if k in keys})
    start = time.time()
    result = train.finetune(model, tok, records, cfg, use_chat_template=mspec["chat_template"],
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
    checkpoint.save_checkpoint(result["model"], tok, outdir, meta)
    write_parquet(history, history_out, meta)


def evaluate(model_dir, mspec: dict, test_path, demos_path, ev: dict, variant: dict, out,
             subject: str | None = None, threads: int | None = None) -> None:
    """Evaluate one model variant on one domain with every configured metric; per-item rows."""
    from stsflow.evaluate import METRICS, summary
    from stsflow.text.segments import Segmenter

    model, tok, _ = _load(model_dir, mspec, threads)
    seg = Segmenter.for_tokenizer(tok, mspec["chat_template"])
    items, demos = corpora.read_records(test_path), corpora.read_records(demos_path)
    rows = []
    for metric in ev["metrics"]:  # each a registered metric (evaluate.METRICS)
        res = METRICS[metric].run(model, tok, items, demos, segmenter=seg, settings=ev,
                                         subject=subject, chat_template=mspec["chat_template"])
        values = summary.item_values(res, metric)
        summary = summary.accuracy_table(res, metric)
        log.info("%s %s: %s", variant, metric, summary)
        for r, v in zip(res, values):
            rows.append({"question_id": int(r["question_id"]), "metric": metric,
                         "value": float(v), "detail": json.dumps(r, default=str)})
    write_parquet(pa.Table.from_pylist(rows), out, {"variant": variant, "evaluate": ev})
