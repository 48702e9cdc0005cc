"""The paper's STS formulas (docs/method.md#sts-formulas), registered as predictors on the SAE's features and, as
baselines, on the raw residual stream and on a random-direction encoder of the same width and k.

    shift_j   = E_tokens (h_j(C, x) - h_j(x))^2          over aligned SFT query tokens
    D_N       = the N dimensions with the largest shift_j
    STS_act   = E_tokens sum_{j in D_N} h_j(x~)
    STS_icl   = E_tokens sum_{j in D_N} (h_j(C~, x~) - h_j(x~))^2
    STS_sq    = mean_{j in D_N} E_tokens h_j(x~)^2       (the authors' notebook)

For the residual stream h is |z| in STS_act (``features.panel`` says why) and z elsewhere; each
space has its own shift vector and D_N.
"""

from __future__ import annotations

import math

import numpy as np

from stsflow.features.stats import Stats
from stsflow.scores.registry import register_predictor


def act(dims: np.ndarray, plain: Stats) -> float:
    return float(plain.sum[dims].sum() / max(plain.n_tokens, 1))


def icl(dims: np.ndarray, paired: Stats) -> float:
    if paired.diff_sumsq is None:
        raise ValueError("ICL statistics have no paired differences")
    return float(paired.diff_sumsq[dims].sum() / max(paired.n_tokens, 1))


def sq(dims: np.ndarray, plain: Stats) -> float:
    return float((plain.sumsq[dims] / max(plain.n_tokens, 1)).mean())


def sts_scores(dims: np.ndarray, plain: Stats, paired: Stats) -> dict:
    """STS_act, STS_icl and STS_sq of one domain for the dimension set ``dims``."""
    return {"sts_act": act(dims, plain), "sts_icl": icl(dims, paired), "sts_sq": sq(dims, plain),
            "n_tokens": int(plain.n_tokens)}


def _in(space: str, formula):
    def fn(x):
        dims = x.dims(space)
        if not len(dims):
            return math.nan
        return formula(dims, x.icl[space] if formula is icl else x.plain[space])
    return fn


for _space, _suffix, _family, _what in (
        ("sae", "", "sts", "the SAE's features"),
        ("resid", "_resid", "raw", "the raw residual stream (|z| for act)"),
        ("randenc", "_randenc", "random", "a random-direction encoder of the SAE's width and k")):
    _needs = () if _space == "sae" else ("panel",)  # the other spaces come from the panel
    register_predictor(f"sts_act{_suffix}", family=_family, oracle=True, needs=_needs,
                       about=f"STS_act on {_what}")(_in(_space, act))
    register_predictor(f"sts_icl{_suffix}", family=_family, oracle=True, needs=_needs,
                       about=f"STS_icl on {_what}")(_in(_space, icl))
    if _space == "sae":
        register_predictor("sts_sq", family="sts", oracle=True,
                           about="STS_sq (the authors' notebook) on the SAE's features")(
            _in("sae", sq))
