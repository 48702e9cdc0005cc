"""Gathering the panel (``features.panel``) during extraction: the random-direction encoder and
the accumulator fed batch by batch with the residual and SAE features of the counted tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from stsflow.features.panel import POOLED, PREFIX, RANDENC_STATS, RESID_STATS, RESID_TOKENS
from stsflow.features.stats import Stats
from stsflow.io.files import read_table


class RandomEncoder:
    """A TopK encoder with random unit directions: the "random SAE" control. Same width and k as
    the SAE (k = the SAE's measured L0 when it is not a TopK SAE), zero encoder bias, and the
    SAE's decoder bias subtracted from the input when the SAE does so, so both see the same input.
    Seeded: the same (seed, d, width) gives the same directions on any machine (drawn on the CPU
    in float32)."""

    def __init__(self, d: int, width: int, k: int, seed: int, b_dec=None, device="cpu"):
        if not 1 <= k <= width:
            raise ValueError(f"random encoder: k={k} must be in [1, width={width}]")
        g = torch.Generator().manual_seed(int(seed))
        w = torch.randn(d, width, generator=g, dtype=torch.float32)
        self.W = (w / w.norm(dim=0, keepdim=True)).to(device)
        self.b_dec = None if b_dec is None else b_dec.detach().float().to(device)
        self.k, self.width, self.seed = int(k), int(width), int(seed)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.b_dec is not None:
            x = x - self.b_dec
        pre = x @ self.W
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.clamp_min(0))

    @classmethod
    def for_sae(cls, sae, d: int, width: int, l0: float | None, seed: int, device="cpu"):
        k = getattr(sae, "k", None) or getattr(getattr(sae, "cfg", None), "k", None)
        if not k:
            if not l0:
                raise ValueError("random encoder: the SAE is not TopK and its manifest has no "
                                 "measured L0 to take k from")
            k = max(1, round(float(l0)))
        apply_b_dec = getattr(sae, "apply_b_dec", None)
        if apply_b_dec is None:
            apply_b_dec = getattr(getattr(sae, "cfg", None), "apply_b_dec_to_input", False)
        b_dec = getattr(sae, "b_dec", None) if apply_b_dec else None
        return cls(d, width, int(k), seed, b_dec=b_dec, device=device)


class ResidReference:
    """The residual of a plain run's counted tokens, looked up by document."""

    def __init__(self, path: Path | str):
        t = read_table(path)
        self.doc = t["doc_id"].to_numpy()
        self.pos = t["pos"].to_numpy()
        flat = t["resid"].combine_chunks()
        self.z = flat.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(
            t.num_rows, flat.type.list_size)
        starts = np.flatnonzero(np.r_[True, self.doc[1:] != self.doc[:-1]])
        ends = np.r_[starts[1:], len(self.doc)]
        self.span = {int(self.doc[s]): (int(s), int(e)) for s, e in zip(starts, ends)}

    def rows(self, doc_id: int, positions: np.ndarray) -> np.ndarray:
        if doc_id not in self.span:
            raise ValueError(f"document {doc_id} is not in the reference residuals")
        s, e = self.span[doc_id]
        if not np.array_equal(self.pos[s:e], positions):
            raise ValueError(f"document {doc_id}: counted positions differ from the reference run")
        return self.z[s:e]


class PanelAccumulator:
    """Accumulates the panel statistics batch by batch (float64 sums on the device)."""

    def __init__(self, d: int, sae_width: int, encoder: RandomEncoder, device, *,
                 reference: Path | str | None = None, keep_tokens: bool = False,
                 keep_prefix: bool = False, resid_dtype=torch.float16):
        self.d, self.sae_width, self.enc, self.device = d, sae_width, encoder, device
        self.ref = ResidReference(reference) if reference is not None else None
        self.keep_tokens, self.resid_dtype = keep_tokens, resid_dtype
        self.keep_prefix = keep_prefix  # the prefix's features: SFT plain and ICL runs only
        z = lambda n: torch.zeros(n, dtype=torch.float64, device=device)  # noqa: E731
        self.resid = {k: z(d) for k in ("sum", "signed_sum", "sumsq", "nnz")}
        self.rand = {k: z(encoder.width) for k in ("sum", "sumsq", "nnz")}
        if self.ref is not None:
            self.resid |= {"diff_sum": z(d), "diff_sumsq": z(d)}
            self.rand |= {"diff_sum": z(encoder.width), "diff_sumsq": z(encoder.width)}
        self.n_tokens = 0
        self.pooled: list[dict] = []
        self.tokens: list[tuple] = []
        self.prefix: tuple | None = None  # (row offsets, column indices, values), CSR

    def set_prefix(self, feats: torch.Tensor) -> None:
        """SAE features (P, width) of the shared prefix (chat head, demonstrations), kept on the
        CPU as sparse rows."""
        if not feats.shape[0]:
            return
        rows, cols = torch.nonzero(feats, as_tuple=True)  # row-major: columns sorted per row
        offsets = np.zeros(feats.shape[0] + 1, dtype=np.int32)
        np.cumsum(torch.bincount(rows, minlength=feats.shape[0]).cpu().numpy(), out=offsets[1:])
        self.prefix = (offsets, cols.cpu().numpy().astype(np.int32),
                       feats[rows, cols].float().cpu().numpy())

    def update(self, batch, z: torch.Tensor, feats: torch.Tensor) -> None:
        """``batch``: (doc_id, ids, counted) per query; ``z`` (tokens, d) and ``feats``
        (tokens, sae width): the counted tokens of the batch, in (query, pos) order; ``z``
        already rounded."""
        z = z.float()
        r = self.enc.encode(z)  # dense (tokens, width) float32, like the SAE's features
        # float64 sums of float32 values (torch converts in chunks of the reduction, not by
        # keeping a float64 matrix around)
        _acc(self.resid, z.abs(), signed=z)
        _acc(self.rand, r)
        self.n_tokens += z.shape[0]
        if self.ref is not None:
            ref = torch.from_numpy(np.concatenate([
                self.ref.rows(doc, np.flatnonzero(np.asarray(c, dtype=bool)))
                for doc, _, c in batch])).to(z.device)
            for acc, diff in ((self.resid, z - ref), (self.rand, r - self.enc.encode(ref))):
                acc["diff_sum"] += diff.sum(0, dtype=torch.float64)
                acc["diff_sumsq"] += (diff * diff).sum(0, dtype=torch.float64)
        start = 0
        for doc, _, c in batch:
            n = int(np.sum(c))
            zs, fs = z[start:start + n], feats[start:start + n]
            mean_f = fs.double().mean(0) if n else torch.zeros(fs.shape[1], dtype=torch.float64)
            idx = torch.nonzero(mean_f, as_tuple=True)[0]
            self.pooled.append({
                "doc_id": int(doc), "n_tokens": n,
                "resid": (zs.double().mean(0) if n else torch.zeros(self.d, dtype=torch.float64))
                .float().cpu().numpy(),
                "sae_idx": idx.cpu().numpy().astype(np.int32),
                "sae_val": mean_f[idx].float().cpu().numpy()})
            if self.keep_tokens and n:
                self.tokens.append((int(doc), np.flatnonzero(np.asarray(c, dtype=bool)),
                                    zs.to(self.resid_dtype).cpu().numpy()))
            start += n

    def write(self, outdir: Path | str, meta: dict) -> None:
        from stsflow.io.files import atomic_dir, write_parquet

        with atomic_dir(outdir) as tmp:
            tmp = Path(tmp)
            meta = dict(meta, n_tokens=self.n_tokens)
            write_parquet(self._stats_table(self.resid, self.d, signed=True),
                          tmp / RESID_STATS, meta)
            write_parquet(self._stats_table(self.rand, self.enc.width), tmp / RANDENC_STATS,
                          dict(meta, random_encoder={"seed": self.enc.seed, "k": self.enc.k,
                                                     "width": self.enc.width}))
            write_parquet(_pooled_table(self.pooled), tmp / POOLED, meta)
            if self.keep_tokens:
                write_parquet(_tokens_table(self.tokens, self.d), tmp / RESID_TOKENS, meta)
            write_parquet(_prefix_table(self.prefix), tmp / PREFIX, meta)

    def _stats_table(self, acc: dict, width: int, signed: bool = False) -> pa.Table:
        s = Stats(width, n_tokens=self.n_tokens, **{
            k: acc[k].cpu().numpy() for k in ("sum", "sumsq", "nnz", "diff_sum", "diff_sumsq")
            if k in acc})
        t = s.table()
        if signed:
            t = t.append_column("signed_sum", pa.array(acc["signed_sum"].cpu().numpy()))
        return t


def _acc(acc: dict, values: torch.Tensor, signed: torch.Tensor | None = None) -> None:
    acc["sum"] += values.sum(0, dtype=torch.float64)
    acc["sumsq"] += (values * values).sum(0, dtype=torch.float64)
    acc["nnz"] += (values != 0).sum(0).double()
    if signed is not None:
        acc["signed_sum"] += signed.sum(0, dtype=torch.float64)


def _prefix_table(feats) -> pa.Table:
    """CSR arrays (offsets, indices, values) of the prefix rows, or none, as the prefix table."""
    if feats is None:
        offsets, idx, val = np.zeros(1, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    else:
        offsets, idx, val = feats
    n = len(offsets) - 1
    return pa.table({
        "pos": pa.array(range(n), pa.int32()),
        "feat_idx": pa.ListArray.from_arrays(pa.array(offsets), pa.array(idx)),
        "feat_val": pa.ListArray.from_arrays(pa.array(offsets), pa.array(val))})


def _pooled_table(rows: list[dict]) -> pa.Table:
    return pa.table({
        "doc_id": pa.array([r["doc_id"] for r in rows], pa.int32()),
        "n_tokens": pa.array([r["n_tokens"] for r in rows], pa.int32()),
        "resid": pa.array([r["resid"] for r in rows], pa.list_(pa.float32())),
        "sae_idx": pa.array([r["sae_idx"] for r in rows], pa.list_(pa.int32())),
        "sae_val": pa.array([r["sae_val"] for r in rows], pa.list_(pa.float32()))})


def _tokens_table(tokens: list[tuple], d: int) -> pa.Table:
    if not tokens:
        return pa.table({"doc_id": pa.array([], pa.int32()), "pos": pa.array([], pa.int32()),
                         "resid": pa.array([], pa.list_(pa.float16(), d))})
    doc = np.concatenate([np.full(len(p), dd, dtype=np.int32) for dd, p, _ in tokens])
    pos = np.concatenate([p.astype(np.int32) for _, p, _ in tokens])
    z = np.concatenate([v for _, _, v in tokens])
    values = pa.array(z.reshape(-1))
    return pa.table({"doc_id": doc, "pos": pos,
                     "resid": pa.FixedSizeListArray.from_arrays(values, d)})


