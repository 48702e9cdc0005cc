"""An SAE trained here with sae-lens on this model's residual stream, saved as a prepared SAE with
its quality figures and exported encoder."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from stsflow.io.files import atomic_dir, write_json
from stsflow.sae.activations import activation_batches
from stsflow.sae.architectures import ARCHITECTURES
from stsflow.sae.encoder import export_checked
from stsflow.sae.info import MANIFEST, _rounded, quality_warnings
from stsflow.sae.prepare import _describe
from stsflow.sae.quality import evaluate_sae

if TYPE_CHECKING:
    from stsflow.config.settings import SaeTrainSettings


def train_sae(model, layer: int, windows: list[tuple[list[int], int]], spec: SaeTrainSettings,
              outdir: Path | str, *, d_in: int, device: str, held_out: list,
              model_batch: int = 8, provenance: dict | None = None, log=print) -> dict:
    """Train an SAE with sae-lens on this model's activations over ``windows`` and save it as a
    prepared SAE with its quality figures on the ``held_out`` windows."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    from sae_lens import SAETrainer
    from sae_lens.config import SAETrainerConfig

    torch.manual_seed(spec.seed)
    sae = ARCHITECTURES[spec.architecture].training(d_in, spec, device)
    total = spec.tokens
    trainer_cfg = SAETrainerConfig(total_training_samples=total,
                                   train_batch_size_samples=spec.batch_tokens, lr=spec.lr,
                                   lr_end=spec.lr / 10, lr_scheduler_name="cosineannealing",
                                   lr_decay_steps=total // spec.batch_tokens,
                                   n_batches_for_norm_estimate=10, device=device,
                                   dead_feature_window=50, feature_sampling_window=100)
    data = activation_batches(model, layer, windows, batch_tokens=spec.batch_tokens,
                              total_tokens=total + 20 * spec.batch_tokens,
                              model_batch=model_batch, seed=spec.seed, device=device)
    start = time.time()
    trained = SAETrainer(trainer_cfg, sae, data).fit()
    log(f"trained SAE L{layer}: {total} tokens in {time.time() - start:.1f}s")
    from sae_lens import SAE

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
        info["hook_name"] = f"blocks.{layer}.hook_resid_post"  # LayerTap: the output of block L
        info["warnings"] = quality_warnings(info)
        info["fast_encoder"] = export_checked(inference, tmp, acts)
        log(f"SAE L{layer}: {info}")
        write_json(tmp / MANIFEST, info)
    return info
