"""Reading a shard back (torch-free: the reduction rules read shards too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from stsflow.io.files import read_metadata, read_table


def read_shard(path: Path | str, width: int | None = None):
    """(doc_id, pos, token_id, csr matrix tokens × width) of a shard, in file order."""
    t = read_table(path)
    idx, val = t["feat_idx"].combine_chunks(), t["feat_val"].combine_chunks()
    offsets = idx.offsets.to_numpy()
    indices = idx.values.to_numpy()
    values = val.values.to_numpy().astype(np.float32)
    if width is None:
        width = int(read_metadata(path)["width"])
    csr = sp.csr_matrix((values, indices, offsets), shape=(t.num_rows, width))
    return (t["doc_id"].to_numpy(), t["pos"].to_numpy(), t["token_id"].to_numpy(), csr)
