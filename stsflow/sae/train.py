"""An SAE trained here with sae-lens on this model's residual stream, saved as a prepared SAE with
its quality figures and exported encoder."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from stsflow.config.resources import SAE_RESIDUALS
from stsflow.io.files import atomic_dir, write_json
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


# batches drawn before training to estimate the input scale (sae-lens's activation scaler)
NORM_BATCHES = 10
# sae-lens settings that the training sweep may vary (stsflow.sae.sweep), at the values the
# workflow trains with: the TopK auxiliary loss, which trains dead latents to reconstruct what
# the live ones miss, at sae-lens's weight (an option of the training SAE's config); a latent
# counts as dead for it after this many steps without firing (an option of the trainer)
SAE_OPTIONS = {"aux_loss_coefficient": 1.0}
TRAINER_OPTIONS = {"dead_feature_window": 50}


def fit_sae(spec: SaeTrainSettings, d_in: int, device: str, data, **options):
    """sae-lens's training of ``spec``'s SAE on the activation batches ``data`` (an iterator
    holding ``NORM_BATCHES`` more batches than ``spec.tokens``); the trained training SAE.
    ``options``: other values of ``SAE_OPTIONS`` and ``TRAINER_OPTIONS``."""
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
    trainer_cfg = SAETrainerConfig(total_training_samples=total,
                                   train_batch_size_samples=spec.batch_tokens, lr=spec.lr,
                                   lr_end=spec.lr / 10, lr_scheduler_name="cosineannealing",
                                   lr_decay_steps=total // spec.batch_tokens,
                                   n_batches_for_norm_estimate=NORM_BATCHES, device=device,
                                   feature_sampling_window=100,
                                   **{k: options.get(k, v) for k, v in TRAINER_OPTIONS.items()})
    trainer = SAETrainer(trainer_cfg, sae, data)
    if spec.b_dec_init == "mean":
        _init_b_dec_to_mean(trainer, data)
    return trainer.fit()


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
              model_name: str | None = None, options: dict | None = None) -> dict:
    """Train an SAE with sae-lens on this model's activations over ``windows`` and save it as a
    prepared SAE with its quality figures on the ``held_out`` windows.

    The windows that train it (``covering_windows``: drawn with the seed until they hold the
    tokens to train on, all of them when the corpora hold fewer) go through the model once and
    their residuals are kept, when they fit ``SAE_RESIDUALS`` (float32; the memory the job
    requests, stsflow.config.resources): a recipe that trains on
    more tokens than the corpora hold then reuses them instead of running the model again.
    Larger ones are streamed from the model (``activation_batches``)."""
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
    trained = fit_sae(spec, d_in, device, data, **(options or {}))
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
        info = {"kind": "train", "path": ".", "train": dict(sorted(dataclasses.asdict(spec).items())), "layer": layer,
                **(provenance or {}), **_rounded(figures),
                "seconds": round(time.time() - start, 1)}
        info.update(_describe(inference))
        info["hook_name"] = hook
        info["warnings"] = quality_warnings(info)
        info["fast_encoder"] = export_checked(inference, tmp, acts)
        log(f"SAE L{layer}: {info}")
        write_json(tmp / MANIFEST, info)
    return info
