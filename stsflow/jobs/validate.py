"""Jobs of the validation loop that need the model: fine-tune the base model on an SFT set (one
method, one seed), and evaluate a model variant on one domain with every configured metric."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from stsflow.config.settings import EvalSettings, FinetuneSettings, ModelSettings
from stsflow.data import corpora
from stsflow.io.files import package_versions, write_parquet
from stsflow.jobs.common import load_job_model, log, model_identity


def select_sites(recipe: FinetuneSettings, inputs: dict, device) -> list:
    """sae_select's sites: for each layer of ``recipe.sae_select``, its SAE loaded from
    ``inputs["sae_L<layer>"]`` and the K dimensions chosen from the predicted shift table
    ``inputs["shift_L<layer>"]`` (stsflow.finetune.selective.choose_dims)."""
    import pyarrow.parquet as pq

    from stsflow.finetune.selective import Site, choose_dims
    from stsflow.sae.prepare import load_sae

    run, sel = recipe.run, recipe.sae_select
    sites = []
    for layer, sae in zip(sel["layers"], sel["saes"]):
        sae_dir = inputs[f"sae_L{layer}"]
        encoder, _ = load_sae(sae_dir, device=str(device))
        dims = choose_dims(pq.read_table(inputs[f"shift_L{layer}"]), run.k, run.select,
                           recipe.seed, layer)
        sites.append(Site(int(layer), sae, str(sae_dir), encoder, dims))
        log.info(f"sae_select: layer {layer}, SAE {sae}, {run.select} {run.k} dimensions")
    return sites


def finetune(model_dir, model: ModelSettings, sft_items, recipe: FinetuneSettings, outdir,
             history_out, threads: int | None = None, inputs: dict | None = None) -> None:
    """Fine-tune the base model on an SFT set and save an atomic checkpoint plus its history.
    ``inputs``: a sae_select run's SAE directories and predicted shift tables by layer
    (``sae_L<layer>``, ``shift_L<layer>``)."""
    import shutil
    import time

    from stsflow.finetune import checkpoint, train

    lm, tok, minfo = load_job_model(model_dir, model, threads)
    records = corpora.read_records(sft_items)
    # max_items: a seeded sample (sts.sample_seed, as every budget), not the first rows of the set
    records, sample = corpora.sample_records(records, recipe.max_items, recipe.sample_seed)
    context, extra = {}, {}
    if recipe.sae_select is not None:
        context["sites"] = select_sites(recipe, inputs or {}, next(lm.parameters()).device)
        extra["dims"] = {str(s.layer): s.dims.tolist() for s in context["sites"]}
    start = time.time()
    result = train.finetune(lm, tok, records, recipe, use_chat_template=model.chat_template,
                            log=log.info, context=context)
    history = pa.table({"step": np.arange(1, len(result["losses"]) + 1, dtype=np.int32),
                        "loss": result["losses"], "lr": result["lrs"],
                        "grad_norm": result["grad_norms"]})
    meta = {"base": model_identity(minfo), "method": recipe.method, "seed": recipe.seed,
            "recipe": dataclasses.asdict(recipe), "n_examples": result["n_examples"],
            "sample": sample, "n_answer_cut": result["n_answer_cut"],
            "n_records": result["n_records"],
            "share_answer_cut": round(result["n_answer_cut"] / max(result["n_records"], 1), 4),
            "n_steps": result["n_steps"], "tokens_seen": result["tokens_seen"],
            "n_trainable": result["n_trainable"], **extra,
            "seconds": round(time.time() - start, 1), "packages": package_versions()}
    outdir = Path(outdir)
    if outdir.exists():  # Snakemake may pre-create the directory; a checkpoint is never reused
        shutil.rmtree(outdir)
    checkpoint.save_checkpoint(result["model"], tok, outdir, meta, base_dir=model_dir)
    write_parquet(history, history_out, meta)


def evaluate(model_dir, model: ModelSettings, test_path, demos_path, settings: EvalSettings,
             variant: dict, out, subject: str | None = None, threads: int | None = None,
             reps_out=None) -> None:
    """Evaluate one model variant on one domain with every configured metric; per-item rows.
    ``reps_out``: the mean residual of the domain's queries at every layer
    (``features.reps``), for the before/after-SFT similarity."""
    from stsflow.evaluate import METRICS, summary
    from stsflow.evaluate.metrics import teacher_forced
    from stsflow.text.segments import Segmenter

    lm, tok, _ = load_job_model(model_dir, model, threads)
    seg = Segmenter.for_tokenizer(tok, model.chat_template)
    items, demos = corpora.read_records(test_path), corpora.read_records(demos_path)
    # NLL, option log-likelihood and the layer means read one forward of each item together
    forced, means = teacher_forced(lm, tok, items, demos, segmenter=seg, settings=settings,
                                   residuals=reps_out is not None,
                                   residual_max_length=model.max_length)
    rows = []
    for metric in settings.metrics:  # each a registered metric (evaluate.METRICS)
        res = forced[metric] if metric in forced else METRICS[metric].run(
            lm, tok, items, demos, segmenter=seg, settings=settings, subject=subject,
            chat_template=model.chat_template)
        values = summary.item_values(res, metric)
        overview = summary.accuracy_table(res, metric)
        log.info("%s %s: %s", variant, metric, overview)
        for r, v in zip(res, values):
            rows.append({"question_id": int(r["question_id"]), "metric": metric,
                         "value": float(v), "detail": json.dumps(r, default=str)})
    write_parquet(pa.Table.from_pylist(rows), out,
                  {"variant": variant, "evaluate": settings.as_dict()})
    if reps_out is not None:
        from stsflow.features.reps import write_reps

        write_reps(means.sums, means.n_tokens, reps_out, {"variant": variant, "items": len(items)})
