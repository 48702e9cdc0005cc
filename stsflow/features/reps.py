"""The mean residual of a domain's queries at every layer, recorded by each evaluation job (base
model and each fine-tuned model): what the before/after-SFT representation similarity
(``scores`` predictor ``before_after``) compares, with no model pass of its own beyond the one the
evaluation job adds to the model it has already loaded.

Inputs: every test item of the domain as a plain STS query (chat head, then the user turn, as
extraction formats it, ``text.segments``); pooled: the token mean over the content tokens of the
user's text (``sts.query_tokens: content``), at the output of every decoder block. The file has
one row per layer: ``layer`` (block index) and ``sum`` (d float64 values); ``n_tokens`` in its
metadata. The same items and tokens on both sides, so base and tuned means are paired.

Reading is torch-free (the reduction rules read these files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def layer_sums(model, seg, records: list[dict], batch_size: int = 8,
               max_length: int | None = None) -> tuple[np.ndarray, int]:
    """(sums (n_layers, d) float64 over the content tokens of every record's plain query, the
    token count): one forward pass per batch of queries, every block's output captured with
    hooks (the residual stream after the block, as extraction's ``LayerTap`` reads it; the
    model's ``hidden_states[-1]`` is after the final norm in recent transformers). Queries are cut
    to ``max_length`` tokens, as extraction cuts them."""
    import torch

    from stsflow.models.tap import StopForward, decoder_layers

    device = next(model.parameters()).device
    head = list(seg.head())
    queries = []
    for r in records:
        ids, counted = seg.query_parts(r, "domain")
        cut = len(ids) if max_length is None else max_length
        queries.append((list(ids)[:cut], list(counted)[:cut]))
    blocks = decoder_layers(model)
    outputs: list = [None] * len(blocks)

    def hook(i):
        def capture(module, args, output):
            outputs[i] = output[0] if isinstance(output, tuple) else output
            if i == len(blocks) - 1:
                raise StopForward  # nothing after the last block is read: no final norm, no LM head
        return capture

    handles = [blk.register_forward_hook(hook(i)) for i, blk in enumerate(blocks)]
    sums, n = None, 0
    try:
        with torch.no_grad():
            for b in range(0, len(queries), batch_size):
                batch = queries[b:b + batch_size]
                sums, n = _add_batch(model, head, batch, outputs, device, sums, n)
    finally:
        for h in handles:
            h.remove()
    return sums, n


def _add_batch(model, head, batch, outputs, device, sums, n):
    import torch

    from stsflow.models.batching import pad_batch
    from stsflow.models.tap import StopForward

    ids, mask = pad_batch([head + list(q) for q, _ in batch])
    try:
        model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
    except StopForward:
        pass
    hs = torch.stack(list(outputs))  # (n_layers, B, T, d): block outputs
    keep = torch.zeros(ids.shape, dtype=torch.bool)
    for r, (q, counted) in enumerate(batch):
        keep[r, len(head):len(head) + len(q)] = torch.tensor(counted, dtype=torch.bool)
    part = hs[:, keep.to(device)].double().sum(1).cpu().numpy()
    return (part if sums is None else sums + part), n + int(keep.sum())


def write_reps(sums: np.ndarray, n_tokens: int, out, meta: dict) -> None:
    from stsflow.io.files import write_parquet

    write_parquet(pa.table({"layer": pa.array(range(sums.shape[0]), pa.int32()),
                            "sum": pa.array(list(sums), pa.list_(pa.float64()))}),
                  out, dict(meta, n_tokens=n_tokens, pooling="token mean, content tokens"))


def check_paired(base: Path | str, tuned: Path | str) -> None:
    """Base and tuned means must pool the same items and tokens (same data and settings)."""
    from stsflow.io.files import read_metadata

    a, b = read_metadata(base), read_metadata(tuned)
    if (a.get("items"), a.get("n_tokens")) != (b.get("items"), b.get("n_tokens")):
        raise ValueError(f"{base} and {tuned} pool different queries ({a.get('items')} items, "
                         f"{a.get('n_tokens')} tokens vs {b.get('items')}, {b.get('n_tokens')}): "
                         "rerun both evaluations on the same data")


def read_layer_mean(path: Path | str, layer: int) -> np.ndarray:
    """The mean residual after block ``layer`` over the recorded tokens."""
    from stsflow.io.files import read_metadata

    t = pq.read_table(path)
    rows = t["layer"].to_numpy()
    if layer not in rows:
        raise ValueError(f"{path} has no layer {layer} (layers 0..{rows.max()})")
    n = int(read_metadata(path)["n_tokens"])
    return np.asarray(t["sum"][int(np.flatnonzero(rows == layer)[0])].as_py()) / max(n, 1)
