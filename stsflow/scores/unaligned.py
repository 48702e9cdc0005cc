"""The authors' notebook computation (PKU-ML/STS, ``iclr26_metric.ipynb``), kept so users see what
query alignment changes.

The notebook saved the SAE features of every token the model saw, query after query, prompt
included (for the ICL run: head, demonstrations, then the query), and subtracted the ICL token
stream from the plain one row by row: row r of one run against row r of the other, whatever
tokens they hold. After the first query the rows are no longer the same token; the "shift" then
mixes demonstration tokens with query tokens. Its top-N dimensions feed STS_sq.

Rebuilt here from the shards (every token of each query turn) and the panels' prefix features:
each run's stream is, for every query of the ICL run in document order, the prefix rows then the
query's rows; the two streams are cut to the shorter one's length R, and

    shift_unaligned_j = (1/R) sum_r (h_j(icl row r) - h_j(plain row r))^2

``sts_sq_unaligned`` is STS_sq on the N dimensions of this shift (the domain side is unchanged).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from stsflow.scores.registry import register_predictor


def token_stream(shard, prefix: sp.csr_matrix, width: int, docs: np.ndarray) -> sp.csr_matrix:
    """Rows of the prefix then of each query (pos order), for ``docs`` in that order."""
    from stsflow.features.reader import read_shard

    doc, pos, _, csr = read_shard(shard, width)
    order = np.lexsort((pos, doc))
    doc, csr = doc[order], csr[order]
    uniq, first, count = np.unique(doc, return_index=True, return_counts=True)
    span = {int(d): (int(f), int(f + c)) for d, f, c in zip(uniq, first, count)}
    blocks = []
    for d in docs:
        start, end = span[int(d)]
        blocks += [prefix, csr[start:end]]
    return sp.vstack(blocks, format="csr")


def unaligned_shift(icl_shard, icl_prefix, plain_shard, plain_prefix, width: int) -> pa.Table:
    """The notebook's row-by-row shift, as a shift table (``dim, shift, mean_diff, rank``)."""
    from stsflow.features.reader import read_shard

    docs = np.unique(read_shard(icl_shard, width)[0])
    a = token_stream(icl_shard, icl_prefix, width, docs)
    b = token_stream(plain_shard, plain_prefix, width, docs)
    r = min(a.shape[0], b.shape[0])
    diff = (a[:r] - b[:r]).tocsc()
    shift = np.asarray(diff.multiply(diff).sum(0), dtype=np.float64).ravel() / r
    mean_diff = np.asarray(diff.sum(0), dtype=np.float64).ravel() / r
    order = np.lexsort((np.arange(width), -shift))
    rank = np.empty(width, dtype=np.int32)
    rank[order] = np.arange(1, width + 1, dtype=np.int32)
    return pa.table({"dim": np.arange(width, dtype=np.int32), "shift": shift,
                     "mean_diff": mean_diff, "rank": rank})


@register_predictor("sts_sq_unaligned", family="sts", oracle=False,
                    about="STS_sq on the top-N of the authors' unaligned row-by-row shift")
def _sts_sq_unaligned(x) -> float:
    from stsflow.scores.shift import top_dims
    from stsflow.scores.sts import sq

    shift = x.shifts.get("unaligned")
    if shift is None or x.n_top > shift.num_rows:
        return math.nan
    return sq(top_dims(shift, x.n_top), x.plain["sae"])
