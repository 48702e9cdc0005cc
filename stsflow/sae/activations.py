"""Residual-stream activations of token windows at one layer, in batches: what SAE training
reads and what the quality figures are measured on."""

from __future__ import annotations

import torch

from stsflow.models.batching import pad_batch


def window_batch(chunk: list[tuple[list[int], int]]):
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
    from stsflow.models.tap import LayerTap

    tap = LayerTap(model, layer)
    gen = torch.Generator().manual_seed(seed)
    buffer: list[torch.Tensor] = []
    buffered = yielded = 0
    while yielded < total_tokens:
        order = torch.randperm(len(windows), generator=gen).tolist()
        for start in range(0, len(order), model_batch):
            chunk = [windows[i] for i in order[start:start + model_batch]]
            ids, mask, keep = window_batch(chunk)
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
