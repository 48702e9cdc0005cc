"""The residuals an extraction keeps (``<mode>.resid/``), so that more SAEs of the same layer (a
sweep: several k, widths or L0 variants) encode them without running the model again.

    tokens.parquet   one row per query token, in the shard's row order: doc_id, pos, token_id,
                     counted, resid (fixed-size list of d values in the shard's ``feat_dtype``)
    prefix.parquet   the shared prefix's tokens (pos, token_id, resid) where the panel keeps the
                     prefix's features (SFT plain and ICL runs), else no rows

The metadata of ``tokens.parquet`` is the extraction's (model identity, selection, demonstrations,
...), so a sweep SAE's shard records the same provenance as the layer's own.

Stored rounded to ``feat_dtype``, as the panel's residual statistics already are; a sweep SAE
therefore encodes the rounded residual while the layer's own SAE, in the forward pass, sees it
unrounded. With ``feat_dtype: float32`` the two are identical (tested against a dense
computation); with float16 (the default) the SAE's input carries float16 rounding (tested: the
same active features' statistics within a stated tolerance of the float32 ones).
Size: query tokens × d × 2 bytes in float16, e.g. 20,000 tokens of a 3,584-wide model = 143 MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from stsflow.io.files import read_metadata, read_schema, read_table

TOKENS, PREFIX = "tokens.parquet", "prefix.parquet"


def _resid_array(z: np.ndarray, d: int, np_dtype) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(z.astype(np_dtype).reshape(-1)), d)


class ResidualWriter:
    """Collects the residual of every query token batch by batch (``add``) and writes
    ``tokens.parquet`` and ``prefix.parquet`` into ``tmpdir`` (``close``); the caller makes the
    directory appear atomically, with the shard."""

    def __init__(self, tmpdir: Path | str, d: int, np_dtype):
        self.tmp = Path(tmpdir)
        self.d, self.np_dtype = d, np_dtype
        self.rows: list[pa.Table] = []

    def add(self, batch, ids: torch.Tensor, mask: torch.Tensor, resid: torch.Tensor) -> None:
        """``batch``: (doc_id, token ids, counted) per query; ``resid`` (B, T, d) the batch's
        residual, ``mask`` its real tokens."""
        m = mask.bool()
        flat = _checked(resid[m].float().cpu().numpy(), self.np_dtype)
        doc = np.concatenate([np.full(len(q), d, dtype=np.int32) for d, q, _ in batch])
        pos = np.concatenate([np.arange(len(q), dtype=np.int32) for _, q, _ in batch])
        counted = np.concatenate([np.asarray(c, dtype=bool) for _, _, c in batch])
        self.rows.append(pa.table({
            "doc_id": doc, "pos": pos, "token_id": ids[m].cpu().numpy().astype(np.int32),
            "counted": counted, "resid": _resid_array(flat, self.d, self.np_dtype)}))

    def close(self, prefix: list[int], prefix_resid: torch.Tensor | None, meta: dict) -> None:
        from stsflow.io.files import write_parquet

        write_parquet(pa.concat_tables(self.rows) if self.rows else _empty(self.d),
                      self.tmp / TOKENS, meta)
        z = (np.zeros((0, self.d)) if prefix_resid is None
             else _checked(prefix_resid.float().cpu().numpy(), self.np_dtype))
        n = z.shape[0]
        write_parquet(pa.table({"pos": pa.array(range(n), pa.int32()),
                                "token_id": pa.array(prefix[:n], pa.int32()),
                                "resid": _resid_array(z, self.d, self.np_dtype)}),
                      self.tmp / PREFIX, meta)


def _checked(z: np.ndarray, np_dtype) -> np.ndarray:
    """``z`` as stored, refused when the stored dtype cannot hold it (float16 overflows above
    65504: the value would be kept as inf)."""
    stored = z.astype(np_dtype)
    if not np.isfinite(stored).all():
        raise ValueError(f"the residual to keep has values beyond {np.dtype(np_dtype).name}'s "
                         f"range (largest |value| {np.abs(z).max():.3g}). Fix: set "
                         "sts.feat_dtype: float32")
    return stored


def _empty(d: int) -> pa.Table:
    return pa.table({"doc_id": pa.array([], pa.int32()), "pos": pa.array([], pa.int32()),
                     "token_id": pa.array([], pa.int32()), "counted": pa.array([], pa.bool_()),
                     "resid": pa.array([], pa.list_(pa.float16(), d))})


def resid_width(cache_dir: Path | str) -> int:
    """d of kept residuals, from the file's schema; a clear error when they are missing."""
    path = Path(cache_dir) / TOKENS
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the layer's extraction kept no residuals. "
                                "Fix: rerun it (snakemake -R extract)")
    return int(read_schema(path).field("resid").type.list_size)


def _matrix(col) -> np.ndarray:
    col = col.combine_chunks()
    return col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(
        len(col), col.type.list_size)


class CachedSource:
    """The kept residuals of one extraction, served like a forward pass: the queries in stored
    order, then each batch's residual (B, T, d) right-padded with its mask and token ids."""

    def __init__(self, cache_dir: Path | str, device="cpu"):
        self.dir = Path(cache_dir)
        path = self.dir / TOKENS
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the layer's extraction kept no "
                                    "residuals. Fix: rerun it (snakemake -R extract)")
        self.meta = read_metadata(path)
        t = read_table(path)
        self.z = _matrix(t["resid"])
        self.d = self.z.shape[1]
        self.device = device
        doc, tok = t["doc_id"].to_numpy(), t["token_id"].to_numpy()
        counted = t["counted"].to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
        ends = np.r_[starts[1:], len(doc)]
        self.span = {int(doc[s]): (int(s), int(e)) for s, e in zip(starts, ends)}
        self.queries = [(int(doc[s]), tok[s:e].tolist(), counted[s:e].tolist())
                        for s, e in zip(starts, ends)]
        p = read_table(self.dir / PREFIX)
        self.prefix = p["token_id"].to_numpy().tolist()
        self._prefix_z = _matrix(p["resid"]) if p.num_rows else np.zeros((0, self.d), np.float32)

    def prefix_resid(self) -> torch.Tensor:
        return torch.from_numpy(self._prefix_z).to(self.device)

    def run(self, batch):
        """(resid (B, T, d) float32, mask (B, T), ids (B, T)) of a batch of stored queries."""
        from stsflow.models.batching import pad_batch

        ids, mask = pad_batch([q for _, q, _ in batch])
        resid = torch.zeros(len(batch), ids.shape[1], self.d)
        for r, (doc, q, _) in enumerate(batch):
            s, e = self.span[doc]
            resid[r, :e - s] = torch.from_numpy(self.z[s:e])
        return resid.to(self.device), mask.to(self.device), ids.to(self.device)
