"""Predictors of how fine-tuning on an SFT set changes a domain: each registered once
(``register_predictor``) and scored from the per-dimension statistics of the extraction shards.
``sts`` holds the paper's three STS variants; a new predictor is a new module registered here."""

from stsflow.scores import sts  # noqa: F401  (registers the STS variants)
from stsflow.scores.registry import PREDICTORS, register_predictor, sts_scores
from stsflow.scores.shift import overlap, shift_table, top_dims

__all__ = ["PREDICTORS", "overlap", "register_predictor", "shift_table", "sts_scores", "top_dims"]
