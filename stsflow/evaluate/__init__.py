"""Evaluation of a model on a domain's test items: metrics registered once (``registry``), each a
function declaring its kind and direction (``metrics``: nll, option_loglik, generate), MMLU-Pro's
official prompt and answer extraction (``mmlu_pro``), the generation engines of ``generate``
(``engines``: built-in; ``harness``: lm-evaluation-harness) and per-item summaries
(``summary``)."""

from stsflow.evaluate import harness, metrics  # noqa: F401  (register the metrics and engines)
from stsflow.evaluate.engines import ENGINES
from stsflow.evaluate.registry import METRICS, Metric, register_metric

from stsflow import plugins as _plugins

_plugins.load()  # metrics registered by plugins (stsflow.plugins), after the built-in ones

__all__ = ["ENGINES", "METRICS", "Metric", "register_metric"]
