"""Evaluation of a model on a domain's test items: metrics registered once (``registry``; the
built-in ones in ``metrics``: nll, option_loglik, generate; what they compute in ``scoring``),
MMLU-Pro's official prompt and answer extraction (``mmlu_pro``), the generation engines of
``generate`` (``engines``: built-in; ``harness``: lm-evaluation-harness) and per-item summaries
(``summary``). Importing the package loads nothing heavy: the workflow reads the metrics' costs
while it plans; ``registry.metrics()`` returns every metric, plugins' included."""

from stsflow.evaluate.registry import METRICS, Metric, register_metric

__all__ = ["METRICS", "Metric", "register_metric"]
