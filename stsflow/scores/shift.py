"""Shift vectors (the per-dimension mean squared feature change on the SFT queries), their top-N
dimensions, and the overlap of two dimension sets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stsflow.features.stats import Stats


def shift_table(paired: Stats) -> pa.Table:
    """Shift vector of an ICL-vs-plain (or tuned-vs-base) pairing: ``dim, shift, mean_diff,
    rank`` with rank 1 = largest shift; ties broken by the lower dimension index."""
    if paired.diff_sumsq is None:
        raise ValueError("statistics have no paired differences (not an ICL or tuned run)")
    n = max(paired.n_tokens, 1)
    return ranked(paired.diff_sumsq / n, paired.diff_sum / n)


def ranked(shift: np.ndarray, mean_diff: np.ndarray) -> pa.Table:
    """The shift table of per-dimension ``shift`` and ``mean_diff``: rank 1 = largest shift,
    ties broken by the lower dimension index."""
    order = np.lexsort((np.arange(len(shift)), -shift))
    rank = np.empty(len(shift), dtype=np.int32)
    rank[order] = np.arange(1, len(shift) + 1, dtype=np.int32)
    return pa.table({"dim": np.arange(len(shift), dtype=np.int32), "shift": shift,
                     "mean_diff": mean_diff, "rank": rank})


def top_dims(shift: pa.Table, n_top: int) -> np.ndarray:
    """D_N: the dimensions of rank 1..N."""
    rank = shift["rank"].to_numpy()
    if n_top > len(rank):
        raise ValueError(f"n_top={n_top} exceeds the SAE width {len(rank)}")
    return np.sort(shift["dim"].to_numpy()[rank <= n_top])


def overlap(predicted: pa.Table, true: pa.Table, n_top: int) -> float:
    """|D_N ∩ D_N^true| / N."""
    return len(np.intersect1d(top_dims(predicted, n_top), top_dims(true, n_top))) / n_top
