"""Per-dimension sufficient statistics of a shard (no torch: reductions import only this)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa


@dataclass
class Stats:
    """Per-dimension sufficient statistics over the tokens of one shard."""

    width: int
    n_tokens: int = 0
    sum: np.ndarray = field(default=None)
    sumsq: np.ndarray = field(default=None)
    nnz: np.ndarray = field(default=None)
    diff_sum: np.ndarray | None = None
    diff_sumsq: np.ndarray | None = None

    def __post_init__(self):
        for name in ("sum", "sumsq", "nnz"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.width, dtype=np.float64))

    def table(self) -> pa.Table:
        cols = {"dim": np.arange(self.width, dtype=np.int32), "sum": self.sum,
                "sumsq": self.sumsq, "nnz": self.nnz.astype(np.int64)}
        if self.diff_sum is not None:
            cols.update(diff_sum=self.diff_sum, diff_sumsq=self.diff_sumsq)
        return pa.table(cols)

    @classmethod
    def read(cls, path: Path | str) -> "Stats":
        from stsflow.io.files import read_metadata, read_table

        t = read_table(path)
        meta = read_metadata(path)
        s = cls(width=t.num_rows, n_tokens=int(meta["n_tokens"]),
                sum=t["sum"].to_numpy(), sumsq=t["sumsq"].to_numpy(),
                nnz=t["nnz"].to_numpy().astype(np.float64))
        if "diff_sum" in t.column_names:
            s.diff_sum, s.diff_sumsq = t["diff_sum"].to_numpy(), t["diff_sumsq"].to_numpy()
        return s
