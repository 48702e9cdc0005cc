"""The authors' notebook computation (PKU-ML/STS, ``iclr26_metric.ipynb``), kept so users see what
query alignment changes.

The notebook saved the SAE features of every token the model saw, query after query, prompt
included (for the ICL run: head, demonstrations, then the query), and subtracted the ICL token
stream from the plain one row by row: row r of one run against row r of the other, whatever
tokens they hold. After the first query the rows are no longer the same token; the "shift" then
mixes demonstration tokens with query tokens. Its top-N dimensions feed STS_sq.

Rebuilt here from the shards (every token of each query turn) and the panels' prefix features:
each run's stream is, for every query of the ICL run in document order, the prefix rows then the
query's rows; the two streams are cut to R rows, the shorter one's length capped at
``sts.unaligned_rows`` (the notebook's 10,000; 0: no cap), and

    shift_unaligned_j = (1/R) sum_r (h_j(icl row r) - h_j(plain row r))^2

``sts_sq_unaligned`` is STS_sq on the N dimensions of this shift. The domain side is this
project's (counted query tokens), where the notebook used every row of the domain's file: the
difference shown is the one query alignment makes to D_N.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from stsflow.scores.registry import register_predictor
from stsflow.scores.shift import ranked


def token_stream(shard_rows, prefix: sp.csr_matrix, docs: np.ndarray,
                 max_rows: int) -> sp.csr_matrix:
    """The first ``max_rows`` rows of: the prefix then each query (pos order), for ``docs`` in
    that order. ``shard_rows``: (doc, pos, csr) of a shard."""
    doc, pos, csr = shard_rows
    order = np.lexsort((pos, doc))
    doc, csr = doc[order], csr[order]
    uniq, first, count = np.unique(doc, return_index=True, return_counts=True)
    span = {int(d): (int(f), int(f + c)) for d, f, c in zip(uniq, first, count)}
    blocks, n = [], 0
    for d in docs:
        if n >= max_rows:
            break
        start, end = span[int(d)]
        blocks += [prefix, csr[start:end]]
        n += prefix.shape[0] + end - start
    return sp.vstack(blocks, format="csr")[:max_rows]


def unaligned_shift(icl_shard, icl_prefix, plain_shard, plain_prefix, width: int,
                    max_rows: int = 10000) -> pa.Table:
    """The notebook's row-by-row shift, as a shift table (``dim, shift, mean_diff, rank``)."""
    from stsflow.features.reader import read_shard

    icl = read_shard(icl_shard, width)
    plain = read_shard(plain_shard, width)
    docs = np.unique(icl[0])
    cap = max_rows or (icl[3].shape[0] + plain[3].shape[0]
                       + len(docs) * (icl_prefix.shape[0] + plain_prefix.shape[0]))
    a = token_stream((icl[0], icl[1], icl[3]), icl_prefix, docs, cap)
    b = token_stream((plain[0], plain[1], plain[3]), plain_prefix, docs, cap)
    r = min(a.shape[0], b.shape[0])
    diff = (a[:r].astype(np.float64) - b[:r].astype(np.float64)).tocsc()
    return ranked(np.asarray(diff.multiply(diff).sum(0)).ravel() / r,
                  np.asarray(diff.sum(0)).ravel() / r)


@register_predictor("sts_sq_unaligned", family="notebook", oracle=False, needs=("unaligned",),
                    about="STS_sq on the top-N of the authors' unaligned row-by-row shift")
def _sts_sq_unaligned(x) -> float:
    from stsflow.scores.shift import shifted_dims
    from stsflow.scores.sts import sq

    shift = x.shifts.get("unaligned")
    if shift is None or x.n_top > shift.num_rows:
        return math.nan
    dims = shifted_dims(shift, x.n_top)
    return sq(dims, x.plain["sae"]) if len(dims) else math.nan
