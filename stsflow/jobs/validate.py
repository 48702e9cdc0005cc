"""Jobs of the validation loop that need the model: fine-tune the base model on an SFT set (one
method, one seed), and evaluate a model variant on one domain with every configured metric."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from stsflow.config.settings import (CheckpointSettings, EvalSettings, FinetuneSettings,
                                     ModelSettings)
from stsflow.data import corpora
from stsflow.io.files import package_versions, read_frame, read_table, write_parquet
from stsflow.jobs.common import load_job_model, log, model_identity


def replay(model_dir, model: ModelSettings, pool_path, out, *, max_new_tokens: int,
           batch_size: int, threads: int | None = None) -> None:
    """The base model's greedy answers to a domain's pool items (mixture.replay), with their
    provenance: the model, the pool's source, the decoding settings, how many were cut."""
    from stsflow.io.files import read_metadata
    from stsflow.mixture.replay import generate
    from stsflow.text.segments import Segmenter

    lm, tok, minfo = load_job_model(model_dir, model, threads)
    pool = corpora.read_records(pool_path)
    seg = Segmenter.for_tokenizer(tok, model.chat_template)
    rows = generate(lm, tok, pool, seg, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    batch_tokens=model.batch_tokens)
    n_cut = sum(r["finish"] == "length" for r in rows)
    log.info(f"replay: {len(rows)} answers, {n_cut} cut at {max_new_tokens} new tokens")
    corpora.write_records(rows, out, {
        "model": model_identity(minfo), "pool": read_metadata(pool_path).get("source"),
        "max_new_tokens": max_new_tokens, "decoding": "greedy", "n_records": len(rows),
        "n_cut": n_cut, "packages": package_versions()})


def resume_plan(model_dir, minfo: dict, sft_items, recipe: FinetuneSettings, outdir,
                inputs: dict | None, checkpoints: CheckpointSettings):
    """Where a run checkpoints (``<outdir>.resume``) and the material its state depends on: the
    recipe, the base model, every input's identity, the package versions (the trainer adds its
    examples' tokens). A checkpoint of another material is never resumed (stsflow.resume)."""
    from stsflow.models.load import local_fingerprint
    from stsflow.resume import Resume, beside, identity

    base = dict(model_identity(minfo), fingerprint=local_fingerprint(model_dir))
    given = {"model": model_dir, "sft_items": sft_items, **(inputs or {})}
    return Resume(beside(outdir), {
        "recipe": dataclasses.asdict(recipe), "base": base,
        "inputs": {k: identity(v) for k, v in sorted(given.items())},
        "packages": package_versions()},
        every=checkpoints.checkpoint_every, keep=checkpoints.keep_checkpoints, log=log.info)


def finetune(model_dir, model: ModelSettings, sft_items, recipe: FinetuneSettings, outdir,
             history_out, threads: int | None = None, inputs: dict | None = None,
             log_path: str | None = None,
             checkpoints: CheckpointSettings | None = None) -> None:
    """Fine-tune the base model on an SFT set and save an atomic checkpoint plus its history.
    ``inputs``: the run's named inputs (stsflow.workflow.bundles.FinetuneFiles: the SAE sites
    of a method anchored there, a data mixture's replay and weights). ``log_path``: the job's
    log, where the ranks of a sharded run (``recipe.processes`` > 1) write too. ``checkpoints``: how the run checkpoints
    to survive a kill (default: the schema's); it resumes from ``<outdir>.resume`` when a
    checkpoint of this very run is there, and removes it once the model is written (unless
    kept). SIGTERM stops it with a checkpoint and ``stsflow.resume.Interrupted``."""
    import shutil
    import time

    from stsflow.finetune import checkpoint, distributed, train
    from stsflow.mixture.records import mixture_records
    from stsflow.workflow.bundles import FinetuneFiles

    checkpoints = checkpoints or CheckpointSettings.with_defaults()
    rank, n_ranks = distributed.world()
    if recipe.processes > 1 and n_ranks == 1:  # start the ranks; each runs this job again
        from stsflow.jobs import ranks

        ranks.launch(recipe.processes, {
            "job": "stsflow.jobs.validate:finetune", "model_dir": str(model_dir), "model": dataclasses.asdict(model),
            "sft_items": str(sft_items), "recipe": dataclasses.asdict(recipe),
            "outdir": str(outdir), "history_out": str(history_out), "log": log_path,
            "inputs": {k: str(v) for k, v in (inputs or {}).items()},
            "checkpoints": dataclasses.asdict(checkpoints)}, log=log.info)
        return
    lm, tok, minfo = load_job_model(model_dir, model, threads)
    resume = resume_plan(model_dir, minfo, sft_items, recipe, outdir, inputs, checkpoints)
    records = corpora.read_records(sft_items)
    # max_items: a seeded sample (sts.sample_seed, as every budget), not the first rows of the set
    records, sample = corpora.sample_records(records, recipe.max_items, recipe.sample_seed)
    files = FinetuneFiles.read(inputs or {})
    method = recipe.run.registered
    context, extra = {}, {}
    if recipe.mixture is not None:  # the SFT set (sampled as a plain run's) plus the replay
        replay_rows, extra["mixture"] = mixture_records(recipe, files)
        records = records + [{k: r[k] for k in ("id", "question", "solution")}
                             for r in replay_rows]
    if method.context is not None:  # what the method loads first (e.g. its SAE sites)
        context, loaded = method.context(recipe, files, next(lm.parameters()).device)
        extra.update(loaded)

    start = time.time()
    trainer = method.train or train.finetune
    result = trainer(lm, tok, records, recipe, use_chat_template=model.chat_template,
                     log=log.info, context=context, resume=resume)
    history = pa.table({"step": np.arange(1, len(result["losses"]) + 1, dtype=np.int32),
                        "loss": result["losses"], "lr": result["lrs"],
                        "grad_norm": result["grad_norms"],
                        **result.get("columns", {})})  # an RL run: reward, KL, length per step
    extra.update(result.get("extra", {}))
    meta = {"base": model_identity(minfo), "method": recipe.method, "seed": recipe.seed,
            "recipe": dataclasses.asdict(recipe), "n_examples": result["n_examples"],
            "sample": sample, "n_answer_cut": result["n_answer_cut"],
            "n_records": result["n_records"],
            "share_answer_cut": round(result["n_answer_cut"] / max(result["n_records"], 1), 4),
            "n_steps": result["n_steps"], "tokens_seen": result["tokens_seen"],
            "n_trainable": result["n_trainable"], **extra,
            "seconds": round(time.time() - start, 1), "packages": package_versions()}
    state = None
    if n_ranks > 1:  # the shards gathered on rank 0, which alone writes
        meta["processes"] = n_ranks
        state = distributed.full_state_dict(result["model"])
        if rank:
            return
    outdir = Path(outdir)
    if outdir.exists():  # Snakemake may pre-create the directory; a checkpoint is never reused
        shutil.rmtree(outdir)
    checkpoint.save_checkpoint(result["model"], tok, outdir, meta, base_dir=model_dir,
                               state_dict=state)
    write_parquet(history, history_out, meta)
    resume.finish()


def evaluate(model_dir, model: ModelSettings, test_path, demos_path, settings: EvalSettings,
             variant: dict, out, subject: str | None = None, threads: int | None = None,
             reps_out=None) -> None:
    """Evaluate one model variant on one domain with every configured metric; per-item rows.
    ``reps_out``: the mean residual of the domain's queries at every layer
    (``features.reps``), for the before/after-SFT similarity."""
    from stsflow.evaluate import METRICS, summary
    from stsflow.evaluate.scoring import teacher_forced
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
            chat_template=model.chat_template, model_dir=model_dir, dtype=model.dtype)
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


def import_posthoc(model_dir, label: str, tuned: dict, method: str, seed: int, outdir,
                   history_out) -> None:
    """A post-hoc pair's tuned model (``posthoc.<label>``) checked against the base and imported
    as the checkpoint of run ``method`` (stsflow.models.posthoc), with a history file that says
    where it came from: no steps, no trainable-parameter count or time (it was trained
    elsewhere)."""
    import shutil
    import time

    from stsflow.models.load import model_info
    from stsflow.models.posthoc import import_tuned

    start = time.time()
    outdir = Path(outdir)
    if outdir.exists():  # Snakemake may pre-create the directory; a checkpoint is never reused
        shutil.rmtree(outdir)
    meta = import_tuned(tuned, model_dir, outdir,
                        {"base": model_identity(model_info(model_dir)), "method": method,
                         "seed": seed, "posthoc": label, "packages": package_versions()},
                        field=f"posthoc.{label}.tuned")
    log.info(f"posthoc {label}: imported {meta['imported']} in {time.time() - start:.1f}s")
    history = pa.table({"step": pa.array([], pa.int32()), "loss": pa.array([], pa.float64()),
                        "lr": pa.array([], pa.float64()), "grad_norm": pa.array([], pa.float64())})
    write_parquet(history, history_out,
                  {k: meta[k] for k in ("base", "method", "seed", "posthoc", "imported")}
                  | {"n_trainable": None, "seconds": None, "n_steps": 0})
