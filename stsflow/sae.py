"""Sparse autoencoders: from the sae-lens registry, a local sae-lens directory, or trained here.

A prepared SAE is a directory with ``stsflow_sae.json`` (identity and provenance) and, for registry
and trained SAEs, the sae-lens inference files (``cfg.json``, ``sae_weights.safetensors``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch

from stsflow.encoder import SparseEncoder, export_checked
from stsflow.storage import write_json

MANIFEST = "stsflow_sae.json"


def _finish(tmp: Path, outdir: Path, info: dict) -> dict:
    write_json(tmp / MANIFEST, info)
    if outdir.exists():
        shutil.rmtree(outdir)
    tmp.rename(outdir)
    return info


def _tmpdir(outdir: Path) -> Path:
    tmp = outdir.with_name(outdir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def prepare_pretrained(spec: dict, outdir: Path | str) -> dict:
    """Registry or local SAE → prepared directory (registry SAEs are downloaded and saved)."""
    from sae_lens import SAE

    outdir = Path(outdir)
    tmp = _tmpdir(outdir)
    if "registry" in spec:
        reg = spec["registry"]
        sae = SAE.from_pretrained(reg["release"], reg["sae_id"])
        sae.save_inference_model(str(tmp))
        info = {"kind": "registry", **reg, "path": "."}
    else:
        path = Path(spec["local"]["path"]).resolve()
        sae = SAE.load_from_disk(str(path))
        info = {"kind": "local", "path": str(path)}
    info.update(_describe(sae))
    # No model activations here: check the exported encoder on inputs of a residual-like scale.
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(512, int(sae.cfg.d_in), generator=gen) * 4
    info["fast_encoder"] = export_checked(sae, tmp, sample)
    return _finish(tmp, outdir, info)


def _describe(sae) -> dict:
    cfg = sae.cfg
    meta = getattr(cfg, "metadata", None)
    return {"d_in": int(cfg.d_in), "width": int(cfg.d_sae), "architecture": cfg.architecture(),
            "hook_name": getattr(meta, "hook_name", None) if meta else None}


def load_sae(prepared: Path | str, device: str = "cpu"):
    """(encoder, info): the exported encoder when prepare_sae verified one, else sae-lens."""
    info = json.loads((Path(prepared) / MANIFEST).read_text())
    if info.get("fast_encoder"):
        return SparseEncoder.load(prepared, device), info
    from sae_lens import SAE

    path = Path(prepared) / info["path"] if info["kind"] != "local" else Path(info["path"])
    sae = SAE.load_from_disk(str(path), device=device)
    sae.eval()
    return sae, info


def activation_batches(model, layer: int, windows: list[tuple[list[int], int]], *,
                       batch_tokens: int, total_tokens: int, model_batch: int, seed: int,
                       device: str):
    """Residual-stream activations at ``layer`` over token windows, shuffled in a buffer, cycled
    until ``total_tokens`` have been yielded, in batches of ``batch_tokens`` rows.

    Each window is ``(ids, skip)``: the first ``skip`` positions (the chat head, whose first
    token carries the huge-norm "attention sink" activations) are run but not used. Extraction
    never encodes them either: they live in the cached prefix."""
    from stsflow.models import LayerTap

    tap = LayerTap(model, layer)
    gen = torch.Generator().manual_seed(seed)
    buffer: list[torch.Tensor] = []
    buffered = yielded = 0
    while yielded < total_tokens:
        order = torch.randperm(len(windows), generator=gen).tolist()
        for start in range(0, len(order), model_batch):
            chunk = [windows[i] for i in order[start:start + model_batch]]
            width = max(len(w) for w, _ in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            keep = torch.zeros(len(chunk), width, dtype=torch.bool)
            for r, (w, skip) in enumerate(chunk):
                ids[r, :len(w)] = torch.tensor(w)
                mask[r, :len(w)] = 1
                keep[r, skip:len(w)] = True
            with torch.no_grad():
                acts = tap.run(model, input_ids=ids.to(device), attention_mask=mask.to(device))
            buffer.append(acts[keep.to(device)].float().cpu())
            buffered += buffer[-1].shape[0]
            if buffered >= 8 * batch_tokens:
                flat = torch.cat(buffer)
                flat = flat[torch.randperm(flat.shape[0], generator=gen)]
                n_full = flat.shape[0] // batch_tokens * batch_tokens
                for b in range(0, n_full, batch_tokens):
                    yield flat[b:b + batch_tokens]
                    yielded += batch_tokens
                    if yielded >= total_tokens:
                        return
                buffer, buffered = [flat[n_full:]], flat.shape[0] - n_full


def train_sae(model, layer: int, windows: list[list[int]], spec: dict, outdir: Path | str, *,
              d_in: int, device: str, model_batch: int = 8, log=print) -> dict:
    """Train an SAE with sae-lens on this model's activations and save it as a prepared SAE."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    from sae_lens import (SAETrainer, StandardTrainingSAE, StandardTrainingSAEConfig,
                          TopKTrainingSAE, TopKTrainingSAEConfig)
    from sae_lens.config import SAETrainerConfig

    torch.manual_seed(spec["seed"])
    if spec["architecture"] == "topk":
        # Inputs are scaled to norm sqrt(d_in) during training (the factor is folded into the
        # weights afterwards): residual streams have model-specific norms far from the init.
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(
            d_in=d_in, d_sae=spec["width"], k=spec["k"], device=device,
            normalize_activations="expected_average_only_in"))
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(
            d_in=d_in, d_sae=spec["width"], l1_coefficient=spec["l1_coefficient"], device=device,
            normalize_activations="expected_average_only_in"))
    total = spec["tokens"]
    trainer_cfg = SAETrainerConfig(total_training_samples=total,
                                   train_batch_size_samples=spec["batch_tokens"], lr=spec["lr"],
                                   lr_end=spec["lr"] / 10, lr_scheduler_name="cosineannealing",
                                   lr_decay_steps=total // spec["batch_tokens"],
                                   n_batches_for_norm_estimate=10, device=device,
                                   dead_feature_window=50, feature_sampling_window=100)
    data = activation_batches(model, layer, windows, batch_tokens=spec["batch_tokens"],
                              total_tokens=total + 20 * spec["batch_tokens"],
                              model_batch=model_batch, seed=spec["seed"], device=device)
    start = time.time()
    trained = SAETrainer(trainer_cfg, sae, data).fit()
    log(f"trained SAE L{layer}: {total} tokens in {time.time() - start:.1f}s")
    outdir = Path(outdir)
    tmp = _tmpdir(outdir)
    trained.save_inference_model(str(tmp))
    from sae_lens import SAE

    inference = SAE.load_from_disk(str(tmp), device=device)
    # Held-out activations (another shuffle seed): quality figures for provenance, and the
    # check of the exported fast encoder.
    held_out = torch.cat(list(activation_batches(
        model, layer, windows, batch_tokens=spec["batch_tokens"],
        total_tokens=4 * spec["batch_tokens"], model_batch=model_batch, seed=spec["seed"] + 1,
        device=device)))
    info = {"kind": "train", "path": ".", "train": spec, "layer": layer,
            **_quality(inference, held_out), "seconds": round(time.time() - start, 1)}
    info.update(_describe(inference))
    info["fast_encoder"] = export_checked(inference, tmp, held_out)
    log(f"SAE L{layer}: {info}")
    return _finish(tmp, outdir, info)


@torch.no_grad()
def _quality(sae, x: torch.Tensor) -> dict:
    """Fraction of variance explained, L0 and dead-feature fraction on held-out activations."""
    x = x.to(sae.W_dec.device)
    feats = sae.encode(x)
    recon = sae.decode(feats)
    total = float(((x - x.mean(0)) ** 2).sum())
    fve = 1 - float(((x - recon) ** 2).sum()) / total if total else float("nan")
    return {"fraction_variance_explained": round(fve, 4),
            "l0": round(float((feats > 0).sum(-1).float().mean()), 2),
            "dead_fraction": round(float(((feats > 0).sum(0) == 0).float().mean()), 4),
            "eval_tokens": int(x.shape[0])}
