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


@torch.no_grad()
def layer_residuals(model, layer: int, windows: list[tuple[list[int], int]], *,
                    model_batch: int, device: str) -> torch.Tensor:
    """Residual-stream rows at ``layer`` of the encoded positions of ``windows``, in window
    order, float32 on the CPU: one pass of the model (stopped after the layer)."""
    from stsflow.models.tap import LayerTap

    tap = LayerTap(model, layer)
    rows = []
    for start in range(0, len(windows), model_batch):
        ids, mask, keep = window_batch(windows[start:start + model_batch])
        acts = tap.run(model, input_ids=ids.to(device), attention_mask=mask.to(device))
        rows.append(acts[keep.to(device)].float().cpu())
    return torch.cat(rows)


def covering_windows(windows: list[tuple[list[int], int]], tokens: int, seed: int) -> list[int]:
    """Indices of windows, in a seeded order, until their encoded positions reach ``tokens``
    (every window when they hold fewer): the windows whose residuals train an SAE."""
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen, total = [], 0
    for i in order:
        if total >= tokens:
            break
        chosen.append(i)
        total += len(windows[i][0]) - windows[i][1]
    return chosen


def residual_batches(acts: torch.Tensor, *, batch_tokens: int, total_tokens: int, seed: int):
    """Batches of ``batch_tokens`` rows of ``acts``, every pass over them in a fresh seeded
    order, until ``total_tokens`` rows have been yielded."""
    if acts.shape[0] < batch_tokens:
        raise ValueError(f"{acts.shape[0]} residual rows, fewer than one batch of "
                         f"{batch_tokens}")
    gen = torch.Generator().manual_seed(seed)
    yielded = 0
    while yielded < total_tokens:
        order = torch.randperm(acts.shape[0], generator=gen)
        for b in range(0, acts.shape[0] - batch_tokens + 1, batch_tokens):
            yield acts[order[b:b + batch_tokens]]
            yielded += batch_tokens
            if yielded >= total_tokens:
                return
