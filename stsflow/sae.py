"""Sparse autoencoders: from the sae-lens registry, a local sae-lens directory, or trained here.

A prepared SAE is a directory with ``stsflow_sae.json`` (identity, provenance, quality figures,
warnings) and, for registry and trained SAEs, the sae-lens inference files (``cfg.json``,
``sae_weights.safetensors``).

Choices the paper leaves open, made here:

* **The SAE must belong to the model and layer.** A pretrained SAE must read the residual stream
  after block L (sae-lens hook ``blocks.L.hook_resid_post``, or ``blocks.{L+1}.hook_resid_pre``,
  the same tensor) and take vectors of the model's hidden size. Both are checked before any other
  work (a registry SAE's config is fetched and checked before its weights), with the wording of
  config validation (``stsflow.config.sae_fit_problems``). ``accept_hook:`` accepts one named
  other hook and is recorded as ``accepted_hook``; an input-width mismatch has no override (the
  encoder cannot be applied at all).
* **A declared model that differs from the configured one is a warning**, not an error: Gemma
  Scope's SAEs for gemma-2-9b-it are listed under ``gemma-2-9b``, Llama Scope was trained on the
  base Llama-3.1-8B, and both are used with the instruct models. It is recorded as a structured
  entry of ``warnings``.
* **Quality figures on held-out tokens**, for every SAE: windows of the corpus text rendered after
  the chat head (``EVAL_CONTEXT`` tokens for pretrained SAEs, ``train.context_length`` for trained
  ones), drawn with a seed until ``eval_tokens`` tokens; a trained SAE never trains on them.
  ``l0`` (mean active features per token), ``fraction_variance_explained``
  (1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²), ``dead_fraction`` (features never active on these tokens; noisy
  for wide SAEs, so never warned about), and ``loss_recovered`` =
  (CE_zero − CE_sae) / (CE_zero − CE_clean), with the next-token cross-entropies
  ``ce_clean``, ``ce_with_sae`` and ``ce_zero_ablation`` recorded too.
* **Warnings** when ``fraction_variance_explained`` < 0.5 or ``loss_recovered`` < 0.7
  (``QUALITY_THRESHOLDS``): published residual SAEs are well above both (variance explained
  about 0.7-0.9, loss recovered above 0.9); below them the SAE misses much of what the layer
  carries and STS describes the SAE more than the model.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from stsflow.config import (ConfigError, n_top_problems, registry_model, resid_layer,
                            sae_cfg_facts, sae_fit_problems)
from stsflow.encoder import SparseEncoder, export_checked
from stsflow.models import pad_batch
from stsflow.storage import atomic_dir, write_json

MANIFEST = "stsflow_sae.json"
EVAL_CONTEXT = 128  # tokens per held-out window of a pretrained SAE (as train.context_length)
QUALITY_THRESHOLDS = {"fraction_variance_explained": 0.5, "loss_recovered": 0.7}
FIGURES = ("l0", "fraction_variance_explained", "dead_fraction", "loss_recovered", "ce_clean",
           "ce_with_sae", "ce_zero_ablation", "eval_tokens")


def fetch_pretrained(spec: dict, *, layer: int, hidden_size: int, where: str,
                     n_top: list[int] | None = None):
    """(sae, info) of a registry or local SAE, refused (ConfigError) unless it reads the residual
    stream after block ``layer`` with the model's hidden size; ``where`` is its config entry
    (``models.m.layers.L.sae``). A registry SAE's config is fetched and checked before its
    weights. ``n_top`` is checked against the width here because the registry YAML does not
    carry widths."""
    from sae_lens import SAE

    if "registry" in spec:
        from sae_lens.loading.pretrained_sae_loaders import load_sae_config_from_huggingface

        reg = spec["registry"]
        facts = sae_cfg_facts(load_sae_config_from_huggingface(reg["release"], reg["sae_id"]))
        field, declared = "registry.sae_id", {"registry": registry_model(reg["release"])}
        info = {"kind": "registry", **reg, "path": "."}
    else:
        path = Path(spec["local"]["path"]).resolve()
        facts = sae_cfg_facts(json.loads((path / "cfg.json").read_text()))
        field, declared = "local.path", {}
        info = {"kind": "local", "path": str(path)}
    problems = sae_fit_problems(where, field, facts, layer, hidden_size, "the prepared model",
                                spec.get("accept_hook"))
    problems += n_top_problems(n_top or [], facts["width"], where)
    if problems:
        raise ConfigError(problems)
    if "registry" in spec:
        sae = SAE.from_pretrained(reg["release"], reg["sae_id"])
    else:
        sae = SAE.load_from_disk(str(path))
    sae.eval()
    info.update(_describe(sae))
    info["hook_name"] = info.get("hook_name") or facts["hook_name"]
    if resid_layer(facts["hook_name"]) != layer:  # passed the check: accepted by accept_hook
        info["accepted_hook"] = spec["accept_hook"]
    declared["cfg.json"] = facts["model_name"]
    info["declared_model"] = {k: v for k, v in declared.items() if v}
    return sae, info


def prepare_pretrained(sae, info: dict, outdir: Path | str, *, model, layer: int,
                       held_out: list, configured_model: str, device: str,
                       model_batch: int = 8, provenance: dict | None = None, log=print) -> dict:
    """Save a fetched registry SAE (a local one is used in place), with its quality figures on
    held-out windows of this model and its exported encoder."""
    with atomic_dir(outdir) as tmp:
        if info["kind"] == "registry":
            sae.save_inference_model(str(tmp))
        sae.to(device)
        figures, acts = evaluate_sae(model, layer, sae, held_out, model_batch=model_batch,
                                     device=device)
        info = {**info, **(provenance or {}), **_rounded(figures)}
        info["warnings"] = (_declared_warnings(info["declared_model"], configured_model)
                            + _accepted_warnings(info, layer) + quality_warnings(info))
        info["fast_encoder"] = export_checked(sae, tmp, acts)
        log(f"SAE L{layer}: {info}")
        write_json(tmp / MANIFEST, info)
    return info


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


def _window_batch(chunk: list[tuple[list[int], int]]):
    """Padded ids and mask of token windows ``(ids, skip)``, and the positions to use: all but
    each window's first ``skip`` (the chat head)."""
    ids, mask = pad_batch([w for w, _ in chunk])
    keep = mask.bool()
    for r, (_, skip) in enumerate(chunk):
        keep[r, :skip] = False
    return ids, mask, keep


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
            ids, mask, keep = _window_batch(chunk)
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


def train_sae(model, layer: int, windows: list[tuple[list[int], int]], spec: dict,
              outdir: Path | str, *, d_in: int, device: str, held_out: list,
              model_batch: int = 8, provenance: dict | None = None, log=print) -> dict:
    """Train an SAE with sae-lens on this model's activations over ``windows`` and save it as a
    prepared SAE with its quality figures on the ``held_out`` windows."""
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
    from sae_lens import SAE

    with atomic_dir(outdir) as tmp:
        trained.save_inference_model(str(tmp))
        inference = SAE.load_from_disk(str(tmp), device=device)
        # Held-out windows (never trained on): quality figures for provenance, and the check of
        # the exported fast encoder.
        figures, acts = evaluate_sae(model, layer, inference, held_out, model_batch=model_batch,
                                     device=device)
        info = {"kind": "train", "path": ".", "train": spec, "layer": layer,
                **(provenance or {}), **_rounded(figures),
                "seconds": round(time.time() - start, 1)}
        info.update(_describe(inference))
        info["hook_name"] = f"blocks.{layer}.hook_resid_post"  # LayerTap: the output of block L
        info["warnings"] = quality_warnings(info)
        info["fast_encoder"] = export_checked(inference, tmp, acts)
        log(f"SAE L{layer}: {info}")
        write_json(tmp / MANIFEST, info)
    return info


def split_held_out(pool: dict[str, list], eval_names: list[str], train_names: list[str],
                   eval_tokens: int, seed: int) -> tuple[list, list]:
    """(held-out windows, training windows). ``pool`` maps a corpus name to its records, each a
    list of ``(ids, skip)`` windows. Whole records are held out (a record's windows share a
    document, so splitting one would leak it into training): drawn from ``eval_names`` in a
    seeded order until they hold ``eval_tokens`` encoded tokens, taking at most a fifth of the
    training records (small corpora keep most of their text for training); training windows are
    those of the records of ``train_names`` that are not held out."""
    gen = torch.Generator().manual_seed(seed)
    train_keys = {(name, i) for name in train_names for i in range(len(pool[name]))}
    cap = max(1, len(train_keys) // 5)
    candidates = [(name, i) for name in dict.fromkeys(eval_names) for i in range(len(pool[name]))]
    held, tokens, from_train = set(), 0, 0
    for j in torch.randperm(len(candidates), generator=gen).tolist():
        if tokens >= eval_tokens:
            break
        key = candidates[j]
        if key in train_keys:
            if from_train >= cap:
                continue
            from_train += 1
        held.add(key)
        tokens += sum(len(ids) - skip for ids, skip in pool[key[0]][key[1]])
    held_out = [w for n, i in sorted(held) for w in pool[n][i]]
    train = [w for name in dict.fromkeys(train_names) for i, rec in enumerate(pool[name])
             if (name, i) not in held for w in rec]
    return held_out, train


@torch.no_grad()
def evaluate_sae(model, layer: int, sae, windows: list, *, model_batch: int = 8,
                 device: str = "cpu") -> tuple[dict, torch.Tensor]:
    """Quality figures of ``sae`` at the residual stream after block ``layer`` on held-out
    windows ``(ids, skip)``, and the activations it saw (rows of the encoded positions).

    Three forward passes per batch: clean; with the SAE reconstruction spliced in (a forward
    hook on decoder block ``layer`` replaces its first output, the residual stream); with zeros
    spliced in. Only the encoded positions (from ``skip`` on) are replaced: the chat-head
    positions, which extraction never encodes (they sit in the cached prefix), stay clean. The
    cross-entropy is the mean next-token loss over the same targets in all three passes: every
    token after the first encoded position."""
    import torch.nn.functional as F

    from stsflow.models import decoder_layers

    block = decoder_layers(model)[layer]
    state: dict = {}

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if state["replace"] is None:
            state["acts"] = hidden[state["keep"]]
            return None
        hidden = hidden.clone()
        hidden[state["keep"]] = state["replace"].to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    w_dec = sae.W_dec
    n = 0
    sum_x = sum_sq = sse = l0 = 0.0
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    n_targets = 0
    fired = torch.zeros(w_dec.shape[0], dtype=torch.bool, device=w_dec.device)
    acts_seen = []
    handle = block.register_forward_hook(hook)
    try:
        for start in range(0, len(windows), model_batch):
            chunk = windows[start:start + model_batch]
            ids, mask, keep = _window_batch(chunk)
            ids, mask, keep = ids.to(device), mask.to(device), keep.to(device)
            # targets: token p+1 predicted at p, for encoded positions p with a successor
            pred = keep.clone()
            pred[:, -1] = False
            pred &= keep.roll(-1, dims=1)
            targets = ids.roll(-1, dims=1)[pred]
            state.update(keep=keep, replace=None)

            def loss(ids=ids, mask=mask, pred=pred, targets=targets):
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                scores = logits[pred]  # float32 at least: bf16 log-softmax loses digits
                scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
                return float(F.cross_entropy(scores, targets, reduction="sum"))

            ce["clean"] += loss()
            x = state.pop("acts")
            feats = sae.encode(x.to(w_dec.device, w_dec.dtype))
            recon = sae.decode(feats)
            xd, rd = x.double(), recon.double().to(x.device)
            sum_x = sum_x + xd.sum(0)
            sum_sq += float((xd ** 2).sum())
            sse += float(((xd - rd) ** 2).sum())
            l0 += float((feats != 0).sum())
            fired |= (feats != 0).any(0)
            n += x.shape[0]
            n_targets += int(targets.numel())
            acts_seen.append(x.float().cpu())
            state["replace"] = recon
            ce["sae"] += loss()
            state["replace"] = torch.zeros_like(x)
            ce["zero"] += loss()
    finally:
        handle.remove()
    if not n or not n_targets:
        raise ValueError("no held-out tokens to evaluate the SAE on")
    sst = sum_sq - float((sum_x ** 2).sum()) / n
    clean, spliced, zero = (ce[k] / n_targets for k in ("clean", "sae", "zero"))
    gap = zero - clean
    figures = {"l0": l0 / n, "fraction_variance_explained": 1 - sse / sst if sst else math.nan,
               "dead_fraction": float((~fired).float().mean()),
               "loss_recovered": (zero - spliced) / gap if gap else math.nan,
               "ce_clean": clean, "ce_with_sae": spliced, "ce_zero_ablation": zero,
               "eval_tokens": n}
    return figures, torch.cat(acts_seen)


def _rounded(figures: dict) -> dict:
    digits = {"l0": 2, "fraction_variance_explained": 4, "dead_fraction": 4,
              "loss_recovered": 4}
    return {k: int(v) if k == "eval_tokens" else round(v, digits.get(k, 6))
            for k, v in figures.items()}


def quality_warnings(info: dict) -> list[dict]:
    """Structured warnings for quality figures below ``QUALITY_THRESHOLDS`` (or undefined)."""
    out = []
    for key, threshold in QUALITY_THRESHOLDS.items():
        value = info.get(key)
        if value is None:
            continue
        if math.isnan(value) or value < threshold:
            out.append({"kind": f"low_{key}", "value": value, "threshold": threshold,
                        "message": f"{key.replace('_', ' ')} {value} is below {threshold} on "
                                   f"{info.get('eval_tokens')} held-out tokens: the SAE misses "
                                   "much of this layer, so STS describes the SAE more than the "
                                   "model"})
    return out


def _model_key(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def _declared_warnings(declared: dict, configured: str) -> list[dict]:
    """One warning per declared model name that is not the configured model (names compared
    without the organisation, case-insensitively; a GGUF file name may add
    ``.<quantisation>.gguf``). ``declared`` maps where the name is declared to the name."""
    conf = _model_key(configured)
    by_name: dict[str, list[str]] = {}
    for source, name in declared.items():
        key = _model_key(name)
        if conf != key and not conf.startswith(key + "."):
            by_name.setdefault(name, []).append(source)
    return [{"kind": "declared_model", "sources": sources, "declared": name,
             "configured": configured,
             "message": f"the SAE declares model {name!r} ({', '.join(sources)}), the config uses "
                        f"{configured!r}: expected for an SAE trained on the base model (or "
                        "listed under it) used with its instruct model; otherwise check the SAE"}
            for name, sources in by_name.items()]


def _accepted_warnings(info: dict, layer: int) -> list[dict]:
    if "accepted_hook" not in info:
        return []
    return [{"kind": "accepted_hook", "hook_name": info["accepted_hook"],
             "expected": f"blocks.{layer}.hook_resid_post",
             "message": f"hook {info['accepted_hook']!r} accepted by accept_hook: for layer "
                        f"{layer}"}]


def quality_summary(prepared: Path | str) -> dict:
    """What a report shows of a prepared SAE: identity, quality figures, warnings (poor figures,
    a declared model other than the configured one, an accepted hook)."""
    info = json.loads((Path(prepared) / MANIFEST).read_text())
    keys = ("kind", "release", "sae_id", "path", "hook_name", "accepted_hook", "width",
            "architecture", "declared_model")
    out = {k: info[k] for k in keys if k in info}
    out.update({k: info.get(k) for k in FIGURES})
    out["warnings"] = list(info.get("warnings", []))
    out["thresholds"] = dict(QUALITY_THRESHOLDS)
    return out
