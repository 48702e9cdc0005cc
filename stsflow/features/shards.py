"""The shard format: one row per counted query token with its sparse SAE features, written in row
groups with the run's metadata (read back by ``features.reader``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from stsflow.features.reader import read_shard  # noqa: F401  (torch-free; re-exported)

FEAT_DTYPES = {"float16": (torch.float16, pa.float16(), np.float16),
               "float32": (torch.float32, pa.float32(), np.float32)}


def sae_width(sae) -> int:
    """Width of a fast encoder (stsflow.sae.encoder) or a sae-lens SAE."""
    return int(sae.width) if hasattr(sae, "width") else int(sae.cfg.d_sae)


def sae_dtype(sae) -> torch.dtype:
    return sae.dtype if isinstance(getattr(sae, "dtype", None), torch.dtype) else sae.W_dec.dtype


def shard_schema(feat_dtype: str) -> pa.Schema:
    return pa.schema([("doc_id", pa.int32()), ("pos", pa.int32()), ("token_id", pa.int32()),
                      ("feat_idx", pa.list_(pa.int32())),
                      ("feat_val", pa.list_(FEAT_DTYPES[feat_dtype][1])),
                      ("counted", pa.bool_())])


def _json(v) -> bytes:
    import json

    return json.dumps(v, sort_keys=True, default=str).encode()


def _to_table(batch, ids, mask, flat, schema) -> pa.Table:
    doc = np.concatenate([np.full(len(q), d, dtype=np.int32) for d, q, _ in batch])
    pos = np.concatenate([np.arange(len(q), dtype=np.int32) for _, q, _ in batch])
    counted = np.concatenate([np.asarray(c, dtype=bool) for _, _, c in batch])
    tok = ids[mask.bool()].cpu().numpy().astype(np.int32)
    nz = (flat != 0).cpu()
    counts = nz.sum(1).numpy()
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    r, c = nz.nonzero(as_tuple=True)  # row-major: columns sorted within each row
    vals = flat.cpu()[r, c].numpy().astype(schema.field("feat_val").type.value_type.to_pandas_dtype())
    feat_idx = pa.ListArray.from_arrays(pa.array(offsets), pa.array(c.numpy().astype(np.int32)))
    feat_val = pa.ListArray.from_arrays(pa.array(offsets), pa.array(vals))
    return pa.Table.from_arrays([pa.array(doc), pa.array(pos), pa.array(tok), feat_idx, feat_val,
                                 pa.array(counted)], schema=schema)
