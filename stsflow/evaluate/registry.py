"""The registry of evaluation metrics: each one function registered with its kind (accuracy or
nll) and direction. The evaluate job runs whatever ``evaluate.metrics`` names from here, and a
test keeps the schema's enum equal to this registry."""

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


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, kind: str, higher_is_better: bool):
    """Register an evaluation metric under ``name`` (the value users write in
    ``evaluate.metrics``; the config schema's enum is checked against this registry)."""
    if kind not in ("accuracy", "nll"):
        raise ValueError(f"metric kind must be accuracy or nll, got {kind!r}")

    def wrap(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, fn, kind, higher_is_better)
        return fn
    return wrap


def metric_kind(metric: str) -> str:
    if metric in METRICS:
        return METRICS[metric].kind
    if metric == "accuracy":  # accuracies measured elsewhere (observed: in the config)
        return "accuracy"
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
