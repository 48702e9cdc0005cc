"""Predictors of how fine-tuning on an SFT set changes a domain: each registered once
(``register_predictor``) and scored from the statistics the extraction pass gathers. ``sts``
holds the paper's STS variants and their raw-residual and random-encoder counterparts,
``similarity`` and ``probes`` the cheap baselines, ``controls`` the random-dimension draws; a new
predictor is a new module imported here (or a plugin's, ``stsflow.plugins``)."""

# registration order is column order: the paper's STS first, then the baselines
from stsflow.scores import sts  # noqa: F401,I001
from stsflow.scores import similarity  # noqa: F401
from stsflow.scores import unaligned  # noqa: F401
from stsflow.scores import probes  # noqa: F401
from stsflow.scores.registry import (
    NEEDS,
    PREDICTORS,
    SPACES,
    ScoreInputs,
    needed_inputs,
    oracle_predictors,
    pretraining_predictors,
    register_predictor,
    score,
)
from stsflow.scores.shift import overlap, shift_table, top_dims
from stsflow.scores.sts import sts_scores

from stsflow import plugins as _plugins

_plugins.load()  # predictors registered by plugins (stsflow.plugins), after the built-in ones

__all__ = ["NEEDS", "PREDICTORS", "SPACES", "ScoreInputs", "needed_inputs", "oracle_predictors", "overlap",
           "pretraining_predictors", "register_predictor", "score", "shift_table", "sts_scores", "top_dims"]
