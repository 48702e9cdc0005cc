"""What the baseline predictors need, gathered in the extraction pass that already runs.

Next to the SAE shard, every extraction writes a *panel* directory (``<mode>.panel/``):

    resid.stats.parquet    per residual dimension (d rows): ``sum`` of |z|, ``signed_sum`` of z,
                           ``sumsq``, ``nnz`` and, for paired runs, ``diff_sum``/``diff_sumsq`` of
                           z - z_ref over the same counted tokens as the SAE statistics
    randenc.stats.parquet  the SAE statistics (``features.stats.Stats``) of a random-direction
                           encoder of the SAE's width and k (``panel_gather.RandomEncoder``)
    pooled.parquet         one row per query: the mean over its counted tokens of the residual
                           (``resid``, dense) and of the SAE features (``sae_idx``/``sae_val``,
                           sparse): the inputs of the probes and the representation similarity
    resid.parquet          plain runs only: the residual of every counted token (doc_id, pos,
                           resid), the reference that paired runs subtract
    prefix.parquet         the SAE features of the shared prefix's tokens (chat head and
                           demonstrations; pos, feat_idx, feat_val) of SFT plain and ICL runs
                           (empty for the others): with the shard, the token stream the
                           authors' notebook subtracted row by row (scores.unaligned)

Gathered by ``features.panel_gather`` (torch); this module only names and reads the files, so
the reduction rules stay torch-free. The residual is rounded to the shard's ``feat_dtype`` before
anything is computed from it, on both sides of a pairing, so an ICL run with identical inputs
gives exactly zero differences (the same rule as the SAE features: statistics use exactly the
stored values). The SAE itself encodes the unrounded residual, as without a panel.

Why |z| for the raw-activation STS_act: SAE features are non-negative, so their sum measures how
strongly a direction is present; residual coordinates are signed, and their signed mean over
tokens cancels and is dominated by each dimension's offset. |z| keeps the "how much" reading.
The squared differences of STS_icl and the shift need no such choice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from stsflow.features.stats import Stats
from stsflow.io.files import read_table

RESID_STATS, RANDENC_STATS, POOLED, RESID_TOKENS, PREFIX = (
    "resid.stats.parquet", "randenc.stats.parquet", "pooled.parquet", "resid.parquet",
    "prefix.parquet")


def read_space_stats(panel_dir: Path | str, space: str) -> Stats:
    """The Stats of one feature space of a panel: ``resid`` or ``randenc``."""
    return Stats.read(Path(panel_dir) / {"resid": RESID_STATS, "randenc": RANDENC_STATS}[space])


def read_signed_mean(panel_dir: Path | str) -> np.ndarray:
    """Mean residual over the counted tokens (token-mean pooling)."""
    from stsflow.io.files import read_metadata

    path = Path(panel_dir) / RESID_STATS
    n = int(read_metadata(path)["n_tokens"])
    return read_table(path)["signed_sum"].to_numpy() / max(n, 1)


def read_pooled(panel_dir: Path | str, space: str, width: int | None = None):
    """Per-query pooled vectors (queries × dims): ``resid`` as a dense float64 array, ``sae`` as
    a scipy CSR matrix of the SAE's width (dense would not fit at paper-scale widths). Rows in
    document order, whatever order the extraction's batches wrote them in."""
    t = read_table(Path(panel_dir) / POOLED)
    t = t.take(np.argsort(t["doc_id"].to_numpy(), kind="stable"))
    if space == "resid":
        col = t["resid"].combine_chunks()
        return np.asarray(col.values.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(
            t.num_rows, -1)
    import scipy.sparse as sp

    if width is None:
        raise ValueError("read_pooled(..., 'sae') needs the SAE width")
    idx, val = t["sae_idx"].combine_chunks(), t["sae_val"].combine_chunks()
    return sp.csr_matrix((val.values.to_numpy().astype(np.float64), idx.values.to_numpy(),
                          idx.offsets.to_numpy()), shape=(t.num_rows, width))


def read_prefix(panel_dir: Path | str, width: int):
    """SAE features of the prefix tokens as a scipy CSR matrix (P, width)."""
    import scipy.sparse as sp

    path = Path(panel_dir) / PREFIX
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: this panel was written before the prefix "
                                "features were kept. Fix: rerun the extraction (snakemake -R "
                                "extract)")
    t = read_table(path)
    idx, val = t["feat_idx"].combine_chunks(), t["feat_val"].combine_chunks()
    return sp.csr_matrix((val.values.to_numpy().astype(np.float32), idx.values.to_numpy(),
                          idx.offsets.to_numpy()), shape=(t.num_rows, width))
