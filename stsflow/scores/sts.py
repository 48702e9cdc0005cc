"""The paper's three STS variants, registered as predictors, from per-dimension statistics
(SPEC §3-§5); the shift vector and D_N are computed in ``scores.shift``.

    shift_j   = E_tokens (h_j(C, x) - h_j(x))^2          over aligned SFT query tokens
    D_N       = the N dimensions with the largest shift_j
    STS_act   = E_tokens sum_{j in D_N} h_j(x~)
    STS_icl   = E_tokens sum_{j in D_N} (h_j(C~, x~) - h_j(x~))^2
    STS_sq    = mean_{j in D_N} E_tokens h_j(x~)^2       (the authors' notebook)
"""

from __future__ import annotations

import numpy as np

from stsflow.features.stats import Stats
from stsflow.scores.registry import register_predictor


@register_predictor("sts_act")
def _sts_act(dims: np.ndarray, plain: Stats, icl: Stats) -> float:
    return float(plain.sum[dims].sum() / max(plain.n_tokens, 1))


@register_predictor("sts_icl")
def _sts_icl(dims: np.ndarray, plain: Stats, icl: Stats) -> float:
    return float(icl.diff_sumsq[dims].sum() / max(icl.n_tokens, 1))


@register_predictor("sts_sq")
def _sts_sq(dims: np.ndarray, plain: Stats, icl: Stats) -> float:
    return float((plain.sumsq[dims] / max(plain.n_tokens, 1)).mean())
