"""The pre-declared primary analysis (``report.primary``): its keys and how the config's nulls
resolve to defaults. Fixed by the config alone, before any result exists, so the checks, the
rules and the report all read the same declaration; the statistics that then single out its rows
are in ``stsflow.analysis.correlation``."""

from __future__ import annotations

from stsflow.config.saes import primary_sae

PRIMARY_KEYS = ("predictor", "n_top", "layer", "sae", "metric", "protocol", "target", "method")
PRIMARY_DEFAULT_N = 100  # the paper's N, used when report.primary.n_top is null


def resolve_primary(primary: dict, layers, metrics, n_tops=None, runs=None) -> dict:
    """The pre-declared primary analysis with its defaults filled: n_top null → 100 (the paper's
    N), or, when ``n_tops`` (sts.n_top) lacks 100, the configured N closest to it (the smaller on
    a tie) — still fixed by the config alone, before any result exists; layer null → the lowest
    configured layer (the validated config keeps no YAML key order, so "first" is numeric),
    sae null → that layer's ``sae`` (``layers`` given as the model's layer config), metric
    null → the first of ``metrics`` (evaluate.metrics with fine-tuning, else the observed
    entries' metrics in config order); method null → the first of ``runs`` (the run methods of
    the model and SFT set in workflow order: the first of finetune.methods' runs, else the
    ``posthoc_<label>`` of the post-hoc pair first in label order, the validated config's), or
    None where there is no tuned run (Δ given in the config carry no method)."""
    out = {k: primary.get(k) for k in PRIMARY_KEYS}
    if out["n_top"] is None:
        out["n_top"] = PRIMARY_DEFAULT_N
        if n_tops and PRIMARY_DEFAULT_N not in n_tops:
            out["n_top"] = min(n_tops, key=lambda n: (abs(n - PRIMARY_DEFAULT_N), n))
    if out["layer"] is None and layers:
        out["layer"] = min(int(v) for v in layers)
    if out["sae"] is None and isinstance(layers, dict) and out["layer"] in layers:
        out["sae"] = primary_sae(layers[out["layer"]])
    if out["metric"] is None and metrics:
        out["metric"] = list(metrics)[0]
    if out["method"] is None and runs:
        out["method"] = str(list(runs)[0])
    return out
