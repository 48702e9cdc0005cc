"""Evaluation of a model on a domain's test items: metrics registered once (``registry``), each a
function declaring its kind and direction (``metrics``: nll, option_loglik, generate), MMLU-Pro's
official prompt and answer extraction (``mmlu_pro``), and per-item summaries (``summary``)."""

from stsflow.evaluate import metrics  # noqa: F401  (registers the built-in metrics)
from stsflow.evaluate.registry import METRICS, Metric, register_metric

__all__ = ["METRICS", "Metric", "register_metric"]
