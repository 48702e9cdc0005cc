"""The mean residual of a domain's queries at every layer, recorded by each evaluation job (base
model and each fine-tuned model): what the before/after-SFT representation similarity
(``scores`` predictor ``before_after``) compares, with no model pass of its own: the evaluation's
teacher-forced pass (``evaluate.forced``) reads them from the forward of each item's query.

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


def layer_sums(model, seg, records: list[dict], batch_size: int = 8,
               max_length: int | None = None) -> tuple[np.ndarray, int]:
    """(sums (n_layers, d) float64 over the content tokens of every record's plain query, the
    token count): every block's output (the residual stream after the block, as extraction's
    ``LayerTap`` reads it; the model's ``hidden_states[-1]`` is after the final norm in recent
    transformers) at the first ``max_length`` tokens of each query, as extraction cuts them.
    The evaluation job gets the same sums from its teacher-forced pass; this runs that pass for
    the means alone."""
    from stsflow.evaluate.forced import item_pass

    got = item_pass(model, seg.tokenizer, records, segmenter=seg, prefix=seg.head(),
                    residuals=True, residual_max_length=max_length, batch_size=batch_size)
    return got.sums, got.n_tokens


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
    from stsflow.io.files import read_metadata, read_table

    t = read_table(path)
    rows = t["layer"].to_numpy()
    if layer not in rows:
        raise ValueError(f"{path} has no layer {layer} (layers 0..{rows.max()})")
    n = int(read_metadata(path)["n_tokens"])
    return np.asarray(t["sum"][int(np.flatnonzero(rows == layer)[0])].as_py()) / max(n, 1)
