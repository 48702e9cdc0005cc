"""The registry of predictors: each a function of the top-N shifted dimensions and a domain's
plain and ICL statistics, registered once; the STS tables get one column per entry and a test
keeps the schema's enum (report.primary.variant) equal to it."""

from __future__ import annotations

import numpy as np

from stsflow.features.stats import Stats

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


def sts_scores(dims: np.ndarray, plain: Stats, icl: Stats) -> dict:
    """Every registered predictor (STS_act, STS_icl, STS_sq) of one domain for the dimension set
    ``dims``, and the domain's token count."""
    if icl.diff_sumsq is None:
        raise ValueError("ICL statistics have no paired differences")
    return {**{name: fn(dims, plain, icl) for name, fn in PREDICTORS.items()},
            "n_tokens": int(plain.n_tokens)}
