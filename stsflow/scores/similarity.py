"""Representation similarity of a domain to the SFT set (the paper's "domain-vs-train"
baseline): the cosine of the two mean residual vectors, each the mean over the plain run's counted
query tokens (token-mean pooling, so long queries weigh more, as in every STS average)."""

from __future__ import annotations

import numpy as np

from stsflow.features.panel import read_signed_mean
from stsflow.scores.registry import register_predictor


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float("nan")


@register_predictor("repsim", family="similarity", uses_shift=False,
                    about="cosine of the mean residual of the domain and of the SFT set")
def _repsim(x) -> float:
    return cosine(read_signed_mean(x.domain_panel), read_signed_mean(x.sft_panel))
