"""Similarity of a domain to the SFT set.

- ``repsim`` (the paper's "domain-vs-train representation similarity"): the cosine of the two
  mean residual vectors, each the mean over the plain run's counted query tokens (token-mean
  pooling, so long queries weigh more, as in every STS average).
- ``grad_sim`` (in the spirit of LESS): the cosine of the two corpora's projected mean low-rank
  gradients on the base model (``features.gradients`` defines them).
- ``before_after`` (the paper's "before/after-SFT similarity", post-training: it needs the tuned
  model, so it exists only as the ``before_after_oracle`` column of the true shift's rows): the
  cosine of the domain's mean residual at the row's layer under the base model and under the
  fine-tuned one, on the same queries and tokens (every test item as a plain query, content
  tokens, token-mean pooling; ``features.reps``, recorded by the evaluation jobs). A high
  similarity says fine-tuning left the domain's representation in place.
"""

from __future__ import annotations

import numpy as np


from stsflow.features.panel import read_signed_mean
from stsflow.io.files import read_table
from stsflow.scores.registry import register_predictor


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float("nan")


@register_predictor("repsim", family="similarity", oracle=False, needs=("panel",),
                    about="cosine of the mean residual of the domain and of the SFT set")
def _repsim(x) -> float:
    return cosine(read_signed_mean(x.domain_panel), read_signed_mean(x.sft_panel))


@register_predictor("grad_sim", family="similarity", oracle=False, needs=("gradients",),
                    about="cosine of the mean low-rank gradients of the SFT set and the domain")
def _grad_sim(x) -> float:
    if x.sft_grad is None or x.domain_grad is None:
        return float("nan")
    return cosine(read_table(x.sft_grad)["value"].to_numpy(),
                  read_table(x.domain_grad)["value"].to_numpy())


@register_predictor("before_after", family="post_training", oracle=True, post_training=True,
                    needs=("reps",),
                    about="cosine of the domain's mean residual before and after fine-tuning")
def _before_after(x) -> float:
    from stsflow.features.reps import check_paired, read_layer_mean

    if x.reps_base is None or x.reps_tuned is None or x.layer is None:
        return float("nan")
    check_paired(x.reps_base, x.reps_tuned)
    return cosine(read_layer_mean(x.reps_base, x.layer), read_layer_mean(x.reps_tuned, x.layer))
