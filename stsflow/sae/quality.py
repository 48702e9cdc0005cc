"""Quality of an SAE on held-out whole records of this model: L0, fraction of variance explained,
dead fraction, and next-token loss recovered with the SAE spliced into the residual stream."""

from __future__ import annotations

import math

import torch

from stsflow.sae.activations import window_batch

EVAL_CONTEXT = 128  # tokens per held-out window of a pretrained SAE (as train.context_length)


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

    from stsflow.models.tap import decoder_layers

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
    recon_figures = ReconstructionFigures(w_dec.shape[0])
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    n_targets = 0
    acts_seen = []
    handle = block.register_forward_hook(hook)
    try:
        for start in range(0, len(windows), model_batch):
            chunk = windows[start:start + model_batch]
            ids, mask, keep = window_batch(chunk)
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
            recon = recon_figures.add(sae, x)
            n_targets += int(targets.numel())
            acts_seen.append(x.float().cpu())
            state["replace"] = recon
            ce["sae"] += loss()
            state["replace"] = torch.zeros_like(x)
            ce["zero"] += loss()
    finally:
        handle.remove()
    if not recon_figures.n or not n_targets:
        raise ValueError("no held-out tokens to evaluate the SAE on")
    clean, spliced, zero = (ce[k] / n_targets for k in ("clean", "sae", "zero"))
    gap = zero - clean
    figures = {**recon_figures.result(),
               "loss_recovered": (zero - spliced) / gap if gap else math.nan,
               "ce_clean": clean, "ce_with_sae": spliced, "ce_zero_ablation": zero}
    return figures, torch.cat(acts_seen)


class ReconstructionFigures:
    """The figures of an SAE that need only the layer's activations, summed over batches of
    held-out rows: ``l0``, ``fraction_variance_explained``, ``dead_fraction`` (the share of
    features active on none of the rows) and ``eval_tokens``. ``evaluate_sae`` adds the rows it
    captures; the training sweep (stsflow.sae.sweep) adds cached rows, with the same
    definitions."""

    def __init__(self, width: int):
        self.n, self.sum_x, self.sum_sq, self.sse, self.l0 = 0, 0.0, 0.0, 0.0, 0.0
        self.fired = torch.zeros(width, dtype=torch.bool)

    @torch.no_grad()
    def add(self, sae, x: torch.Tensor) -> torch.Tensor:
        """Encode and decode the rows ``x``, count them in; return the reconstruction."""
        w_dec = sae.W_dec
        feats = sae.encode(x.to(w_dec.device, w_dec.dtype))
        recon = sae.decode(feats)
        xd, rd = x.double(), recon.double().to(x.device)
        self.sum_x = self.sum_x + xd.sum(0)
        self.sum_sq += float((xd ** 2).sum())
        self.sse += float(((xd - rd) ** 2).sum())
        self.l0 += float((feats != 0).sum())
        self.fired = self.fired.to(feats.device) | (feats != 0).any(0)
        self.n += x.shape[0]
        return recon

    def result(self) -> dict:
        sst = self.sum_sq - float((self.sum_x ** 2).sum()) / self.n
        return {"l0": self.l0 / self.n,
                "fraction_variance_explained": 1 - self.sse / sst if sst else math.nan,
                "dead_fraction": float((~self.fired).float().mean()), "eval_tokens": self.n}


@torch.no_grad()
def reconstruction_figures(sae, acts: torch.Tensor, batch_rows: int = 1024) -> dict:
    """``ReconstructionFigures`` of ``sae`` on the activation rows ``acts``."""
    figures = ReconstructionFigures(sae.W_dec.shape[0])
    for start in range(0, acts.shape[0], batch_rows):
        figures.add(sae, acts[start:start + batch_rows])
    return figures.result()
