"""The registry of evaluation metrics: each one function registered with its kind (accuracy or
nll), direction and cost. The evaluate job runs whatever ``evaluate.metrics`` names from here;
config validation refuses a name no module (built in or a plugin's) registered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# ----------------------------------------------------------------------------- summaries


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Metric:
    """An evaluation metric: one function that scores a model on a domain's items, and what its
    per-item values mean. ``run(model, tokenizer, items, demos, *, segmenter, settings,
    subject, chat_template, model_dir=None, dtype=None)`` returns one row per item (``model_dir``
    and ``dtype``: the prepared model the loaded one came from, for engines that load it
    themselves); ``kind`` "accuracy" rows carry ``correct``, "nll" rows ``nll``."""

    name: str
    run: Callable
    kind: str
    higher_is_better: bool
    cost: Callable  # (validated evaluate section) -> MetricCost: what the metric adds to a job


@dataclass(frozen=True)
class MetricCost:
    """What a metric adds to an evaluation job, for the job's runtime and memory requests
    (stsflow.workflow.costs): sequential forward ``calls`` per item, ``passes`` over the items'
    tokens, and ``new_tokens`` generated per item (0: it generates nothing). Every job already
    runs one teacher-forced pass over each item's query (``QUERY_PASS``: the layer means)."""

    calls: int = 0
    passes: int = 0
    new_tokens: int = 0

    def __add__(self, other: "MetricCost") -> "MetricCost":
        return MetricCost(self.calls + other.calls, self.passes + other.passes,
                          max(self.new_tokens, other.new_tokens))


QUERY_PASS = MetricCost(calls=1, passes=1)
METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, kind: str, higher_is_better: bool,
                    cost: Callable[[dict], MetricCost]):
    """Register an evaluation metric under ``name`` (the value users write in
    ``evaluate.metrics``), with its kind, direction and cost."""
    if kind not in ("accuracy", "nll"):
        raise ValueError(f"metric kind must be accuracy or nll, got {kind!r}")

    def wrap(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, fn, kind, higher_is_better, cost)
        return fn
    return wrap


def metrics() -> dict[str, Metric]:
    """Every registered metric: the built-in ones and the plugins' (``stsflow.plugins``)."""
    import importlib

    from stsflow import plugins

    importlib.import_module("stsflow.evaluate.metrics")  # the built-in ones register themselves
    plugins.load()
    return METRICS


def metric_costs(names, evaluate: dict) -> MetricCost:
    """The cost of one evaluation job running the metrics ``names``: its query pass and what
    each metric adds."""
    total = QUERY_PASS
    for name in names:
        total = total + metrics()[name].cost(evaluate)
    return total


def metric_kind(metric: str) -> str:
    if metric in metrics():
        return METRICS[metric].kind
    if metric == "accuracy":  # accuracies measured elsewhere (observed: in the config)
        return "accuracy"
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def higher_is_better(metric: str) -> bool | None:
    """A metric's direction: the registry's, True for accuracies given in the config
    (``observed:``, metric "accuracy"), None when unknown (e.g. a Δ given under another name)."""
    if metric in metrics():
        return METRICS[metric].higher_is_better
    return True if metric == "accuracy" else None
