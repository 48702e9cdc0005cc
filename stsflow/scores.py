"""Reductions: shift vectors and STS scores from per-dimension statistics (SPEC §3-§5).

    shift_j   = E_tokens (h_j(C, x) - h_j(x))^2          over aligned SFT query tokens
    D_N       = the N dimensions with the largest shift_j
    STS_act   = E_tokens sum_{j in D_N} h_j(x~)
    STS_icl   = E_tokens sum_{j in D_N} (h_j(C~, x~) - h_j(x~))^2
    STS_sq    = mean_{j in D_N} E_tokens h_j(x~)^2       (the authors' notebook)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stsflow.featstats import Stats


def shift_table(paired: Stats) -> pa.Table:
    """Shift vector of an ICL-vs-plain (or tuned-vs-base) pairing: ``dim, shift, mean_diff,
    rank`` with rank 1 = largest shift; ties broken by the lower dimension index."""
    if paired.diff_sumsq is None:
        raise ValueError("statistics have no paired differences (not an ICL or tuned run)")
    n = max(paired.n_tokens, 1)
    shift = paired.diff_sumsq / n
    mean_diff = paired.diff_sum / n
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


# Predictors of |Δ| from a domain's statistics and a dimension set, registered once each: the
# STS table gets one column per predictor, in registration order, and the config schema's
# report.primary.variant enum is checked against this registry.
PREDICTORS: dict = {}


def register_predictor(name: str):
    def wrap(fn):
        if name in PREDICTORS:
            raise ValueError(f"predictor {name!r} is registered twice")
        PREDICTORS[name] = fn
        return fn
    return wrap


@register_predictor("sts_act")
def _sts_act(dims: np.ndarray, plain: Stats, icl: Stats) -> float:
    return float(plain.sum[dims].sum() / max(plain.n_tokens, 1))


@register_predictor("sts_icl")
def _sts_icl(dims: np.ndarray, plain: Stats, icl: Stats) -> float:
    return float(icl.diff_sumsq[dims].sum() / max(icl.n_tokens, 1))


@register_predictor("sts_sq")
def _sts_sq(dims: np.ndarray, plain: Stats, icl: Stats) -> float:
    return float((plain.sumsq[dims] / max(plain.n_tokens, 1)).mean())


def sts_scores(dims: np.ndarray, plain: Stats, icl: Stats) -> dict:
    """Every registered predictor (STS_act, STS_icl, STS_sq) of one domain for the dimension set
    ``dims``, and the domain's token count."""
    if icl.diff_sumsq is None:
        raise ValueError("ICL statistics have no paired differences")
    return {**{name: fn(dims, plain, icl) for name, fn in PREDICTORS.items()},
            "n_tokens": int(plain.n_tokens)}


def overlap(predicted: pa.Table, true: pa.Table, n_top: int) -> float:
    """|D_N ∩ D_N^true| / N."""
    return len(np.intersect1d(top_dims(predicted, n_top), top_dims(true, n_top))) / n_top
