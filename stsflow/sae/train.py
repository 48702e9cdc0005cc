"""An SAE trained here with sae-lens on this model's residual stream, saved as a prepared SAE with
its quality figures and exported encoder.

Training resumes after a kill (``stsflow.resume``), as fine-tuning does: about ten checkpoints
per run (the sae-lens trainer's own state through its ``save_trainer_state`` and
``load_trainer_state``: optimizer, schedule, counters, dead-feature statistics, activation
scaling; the training SAE's parameters; where the activation stream is, its buffer included;
the RNGs), and one when SIGTERM arrives, at the next step. Why: a trained SAE at paper scale
reads hundreds of millions of tokens through a 7-9B model, hours of GPU time. The data feed is
where the checkpoints are taken: the trainer asks it for the next batch once the previous step
is complete, counters included."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from stsflow.config.resources import SAE_RESIDUALS
from stsflow.io.files import atomic_dir, write_json
from stsflow.progress import Progress
from stsflow.resume import (Interrupted, Resume, StopSignal, digest, rng_state,
                            set_rng_state)
from stsflow.sae.activations import (
    activation_batches,
    covering_windows,
    layer_residuals,
    residual_batches,
)
from stsflow.sae.architectures import ARCHITECTURES
from stsflow.sae.encoder import export_checked
from stsflow.sae.info import MANIFEST, _rounded, quality_warnings
from stsflow.sae.prepare import _describe
from stsflow.sae.quality import evaluate_sae

if TYPE_CHECKING:
    from stsflow.config.settings import SaeTrainSettings


class _Feed:
    """The trainer's data: the activation stream's batches, and at each step boundary (the
    trainer asks for a batch once the previous step is complete) the progress line and, where
    due or on SIGTERM, a checkpoint."""

    def __init__(self, stream, steps: int, checkpoints, stop, log):
        self.stream, self.steps, self.checkpoints, self.stop = stream, steps, checkpoints, stop
        self.trainer = None  # set once the trainer exists
        self.progress = None
        self.log = log

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        t = self.trainer
        if t is not None and t.n_training_samples > 0:  # not the scale estimate before step 1
            step = t.n_training_steps
            self.progress.update(detail=f"{t.n_training_samples} tokens", done=step)
            ck = self.checkpoints
            if ck is not None and ck.saved != step and (ck.due(step) or (
                    self.stop.requested and step < self.steps)):
                ck.save(step, self._write)
            if self.stop.requested and step < self.steps:
                self.log(f"SAE training stopped by SIGTERM after step {step}/{self.steps}, "
                         "which is saved; a rerun resumes from it")
                raise Interrupted(f"SAE training stopped by SIGTERM at step {step}/{self.steps}"
                                  f" (checkpoint in {ck.root}); rerun to resume")
        return next(self.stream)

    def _write(self, directory: Path) -> None:
        torch.save(self.trainer.sae.state_dict(), directory / "sae.pt")
        self.trainer.save_trainer_state(directory)
        torch.save(self.stream.state_dict(), directory / "stream.pt")
        torch.save(rng_state(), directory / "rng.pt")

    def load(self, directory: Path) -> None:
        t = self.trainer
        t.sae.load_state_dict(torch.load(directory / "sae.pt", map_location=t.cfg.device))
        t.load_trainer_state(directory)
        self.stream.load_state_dict(torch.load(directory / "stream.pt", weights_only=False))
        set_rng_state(torch.load(directory / "rng.pt", weights_only=False))


# batches drawn before training to estimate the input scale (sae-lens's activation scaler)
NORM_BATCHES = 10
# sae-lens settings that the training sweep may vary (stsflow.sae.sweep), at the values the
# workflow trains with: the TopK auxiliary loss, which trains dead latents to reconstruct what
# the live ones miss, at sae-lens's weight (an option of the training SAE's config); a latent
# counts as dead for it after this many steps without firing (an option of the trainer)
SAE_OPTIONS = {"aux_loss_coefficient": 1.0}
TRAINER_OPTIONS = {"dead_feature_window": 50}


def fit_sae(spec: SaeTrainSettings, d_in: int, device: str, data, *, checkpoints=None,
            log=print, name: str = "SAE", **options):
    """sae-lens's training of ``spec``'s SAE on the activation batches ``data`` (a stream with
    ``state_dict``, holding ``NORM_BATCHES`` more batches than ``spec.tokens``); the trained
    training SAE. ``options``: other values of ``SAE_OPTIONS`` and ``TRAINER_OPTIONS``.
    ``checkpoints``: an opened ``stsflow.resume`` checkpoint set: the training goes on from its
    last checkpoint, checkpoints as it goes and on SIGTERM (``_Feed``)."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    from sae_lens import SAETrainer
    from sae_lens.config import SAETrainerConfig

    unknown = set(options) - set(SAE_OPTIONS) - set(TRAINER_OPTIONS)
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}")
    torch.manual_seed(spec.seed)
    sae_options = {k: options.get(k, v) for k, v in SAE_OPTIONS.items()}
    sae = ARCHITECTURES[spec.architecture].training(d_in, spec, device, **sae_options)
    total = spec.tokens
    steps = math.ceil(total / spec.batch_tokens)
    trainer_cfg = SAETrainerConfig(total_training_samples=total,
                                   train_batch_size_samples=spec.batch_tokens, lr=spec.lr,
                                   lr_end=spec.lr / 10, lr_scheduler_name="cosineannealing",
                                   lr_decay_steps=total // spec.batch_tokens,
                                   n_batches_for_norm_estimate=NORM_BATCHES, device=device,
                                   feature_sampling_window=100,
                                   **{k: options.get(k, v) for k, v in TRAINER_OPTIONS.items()})
    with StopSignal(checkpoints is not None) as stop:
        feed = _Feed(data, steps, checkpoints, stop, log)
        trainer = SAETrainer(trainer_cfg, sae, feed)
        feed.trainer = trainer
        if spec.b_dec_init == "mean":
            _init_b_dec_to_mean(trainer, data)
        with checkpoints.reading() if checkpoints is not None else contextlib.nullcontext():
            found = checkpoints.latest() if checkpoints is not None else None
            if found is not None:
                feed.load(found[1])
        if found is not None:
            checkpoints.resumed(found[0], found[1])
        feed.progress = Progress(f"{name} step", steps, "steps", log=log,
                                 start=found[0] if found else 0)
        trained = trainer.fit()
        feed.progress.update(detail=f"{trainer.n_training_samples} tokens", done=steps)
    return trained


@torch.no_grad()
def _init_b_dec_to_mean(trainer, data) -> None:
    """Estimate the input scale as sae-lens does (sqrt(d_in) over the mean norm of the first
    batches) and start the decoder bias at those batches' scaled mean."""
    x = torch.cat([next(data) for _ in range(NORM_BATCHES)]).float()
    factor = trainer.sae.cfg.d_in ** 0.5 / float(x.norm(dim=-1).mean())
    trainer.activation_scaler.scaling_factor = factor
    trainer.sae.b_dec.copy_((x * factor).mean(0).to(trainer.sae.b_dec))


def train_sae(model, layer: int, windows: list[tuple[list[int], int]], spec: SaeTrainSettings,
              outdir: Path | str, *, d_in: int, device: str, held_out: list,
              model_batch: int = 8, provenance: dict | None = None, log=print,
              model_name: str | None = None, options: dict | None = None,
              resume: Resume | None = None) -> dict:
    """Train an SAE with sae-lens on this model's activations over ``windows`` and save it as a
    prepared SAE with its quality figures on the ``held_out`` windows.

    The windows that train it (``covering_windows``: drawn with the seed until they hold the
    tokens to train on, all of them when the corpora hold fewer) go through the model once and
    their residuals are kept, when they fit ``SAE_RESIDUALS`` (float32; the memory the job
    requests, stsflow.config.resources): a recipe that trains on more tokens than the corpora
    hold then reuses them instead of running the model again. Larger ones are streamed from the
    model (``activation_batches``). ``resume``: where the training checkpoints (stsflow.resume);
    it goes on from its last checkpoint when one of this very training is there."""
    need = spec.tokens + NORM_BATCHES * spec.batch_tokens
    start = time.time()
    chosen = covering_windows(windows, need, spec.seed)
    rows = sum(len(windows[i][0]) - windows[i][1] for i in chosen)
    if rows * d_in * 4 <= SAE_RESIDUALS:
        acts = layer_residuals(model, layer, [windows[i] for i in chosen],
                               model_batch=model_batch, device=device)
        data = residual_batches(acts, batch_tokens=spec.batch_tokens, total_tokens=need,
                                seed=spec.seed)
    else:
        data = activation_batches(model, layer, windows, batch_tokens=spec.batch_tokens,
                                  total_tokens=need, model_batch=model_batch, seed=spec.seed,
                                  device=device)
    steps = math.ceil(spec.tokens / spec.batch_tokens)
    checkpoints = (resume.open(steps, f"SAE L{layer}", log, windows=digest(windows),
                               d_in=d_in)
                   if resume is not None else None)
    trained = fit_sae(spec, d_in, device, data, checkpoints=checkpoints, log=log,
                      name=f"SAE L{layer}", **(options or {}))
    log(f"trained SAE L{layer}: {spec.tokens} tokens in {time.time() - start:.1f}s")
    from sae_lens import SAE

    hook = f"blocks.{layer}.hook_resid_post"  # LayerTap: the output of block L
    # recorded in cfg.json as sae-lens records them: the directory is then a valid local SAE of
    # this layer (stsflow.config.checks.sae_fit_problems reads the hook)
    trained.cfg.metadata.hook_name = hook
    if model_name:
        trained.cfg.metadata.model_name = model_name
    with atomic_dir(outdir) as tmp:
        trained.save_inference_model(str(tmp))
        inference = SAE.load_from_disk(str(tmp), device=device)
        # Held-out windows (never trained on): quality figures for provenance, and the check of
        # the exported fast encoder.
        figures, acts = evaluate_sae(model, layer, inference, held_out, model_batch=model_batch,
                                     device=device)
        info = {"kind": "train", "path": ".",
                "train": dict(sorted(dataclasses.asdict(spec).items())), "layer": layer,
                **(provenance or {}), **_rounded(figures),
                "seconds": round(time.time() - start, 1)}
        info.update(_describe(inference))
        info["hook_name"] = hook
        info["warnings"] = quality_warnings(info)
        info["fast_encoder"] = export_checked(inference, tmp, acts)
        log(f"SAE L{layer}: {info}")
        write_json(tmp / MANIFEST, info)
    return info
