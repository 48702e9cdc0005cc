"""Every data-mixture run's allocation, as its allocation job wrote it before fine-tuning and
its fine-tuning job recorded it (the history's ``mixture`` metadata: values, weights, counts,
items available, shortfall), beside the split ``uniform`` gives at the same budget and
availability, and the runs that trained on the same data (stsflow.mixture.identical), of which
the workflow trained only one (stsflow.workflow.mixture).

One row per (method, seed, domain): ``strategy`` and ``allocation`` (the sts rule, from the run
name: mixture.runs), ``value`` (the score or |Δ| it weighed), ``weight``, ``share`` (the weight
over the run's total), ``count`` (replay items trained on), ``available``, ``uniform`` (the
uniform count); per run, repeated on its rows: ``budget`` (R: counts plus shortfall),
``n_short``, ``equals_uniform`` (the same counts as uniform's, domain for domain) and
``same_data`` (the other runs of its method and seed with the same counts, hence the same
training data, ``;``-joined in training order; null when none) with ``trains`` (the run of that
group that trained). Torch-free."""

from __future__ import annotations

import polars as pl

from stsflow.mixture.allocate import allocate, weights
from stsflow.mixture.identical import SameData, identical_runs
from stsflow.mixture.runs import MixRun
from stsflow.mode import RunMethod

SCHEMA = {"method": pl.Utf8, "seed": pl.Int64, "strategy": pl.Utf8, "allocation": pl.Utf8,
          "temperature": pl.Float64, "domain": pl.Utf8, "value": pl.Float64,
          "weight": pl.Float64, "share": pl.Float64, "count": pl.Int64, "available": pl.Int64,
          "uniform": pl.Int64, "budget": pl.Int64, "n_short": pl.Int64,
          "equals_uniform": pl.Boolean, "same_data": pl.Utf8, "trains": pl.Utf8}


def uniform_counts(mixture: dict) -> dict[str, int]:
    """The counts ``uniform`` gives at a run's budget (its counts plus its shortfall) over its
    domains and the items they have (``mixture``: a history's ``mixture`` metadata)."""
    counts, available = mixture["counts"], mixture["available"]
    budget = sum(counts.values()) + int(mixture.get("n_short") or 0)
    return allocate(weights("uniform", list(counts)), budget, available)[0]


def _mixed(runs: dict[tuple[str, int], dict]) -> dict[tuple[str, int], dict]:
    return {key: meta["mixture"] for key, meta in runs.items()
            if RunMethod.parse(key[0]).mix is not None and meta.get("mixture")}


def training_groups(runs: dict[tuple[str, int], dict]) -> dict[tuple[str, int], SameData]:
    """Each run of ``runs`` (as for ``allocation_table``) -> its group of runs with the same
    training data (stsflow.mixture.identical): within one method and seed, a plain run having
    no replay items. Post-hoc pairs, and mixture runs without an allocation, have none."""
    mixed = _mixed(runs)
    families: dict[tuple[str, int], dict[str, dict]] = {}
    for (method, seed), meta in runs.items():
        run = RunMethod.parse(method)
        if run.posthoc or (run.mix is not None and (method, seed) not in mixed):
            continue
        counts = mixed[(method, seed)]["counts"] if run.mix is not None else {}
        families.setdefault((str(run.unmixed), seed), {})[method] = counts
    return {(m, seed): g for (_, seed), counts in families.items()
            for g in identical_runs(counts) for m in g.runs}


def trained_as(runs: dict[tuple[str, int], dict]) -> dict[tuple[str, int], str]:
    """Each run of ``runs`` trained on another's data -> the run that trained (the workflow
    trains and evaluates only that one: stsflow.workflow.mixture)."""
    return {key: g.trains for key, g in training_groups(runs).items() if g.trains != key[0]}


def allocation_table(runs: dict[tuple[str, int], dict]) -> pl.DataFrame:
    """The allocation rows of every mixture run in ``runs`` ((method, seed) -> the history
    metadata, as for analysis.methods.method_table, or for a run not trained itself its
    allocation as ``{"mixture": ...}``); a run without ``mixture`` metadata (a plain run) has
    no rows but takes part in ``same_data`` with no replay."""
    mixed = _mixed(runs)
    same = {key: (";".join(r for r in g.runs if r != key[0]) or None, g.trains)
            for key, g in training_groups(runs).items()}
    rows = []
    for (method, seed), mix in mixed.items():
        name = MixRun.parse(RunMethod.parse(method).mix)
        uniform = uniform_counts(mix)
        total = sum(mix["weights"].values())
        for d, n in mix["counts"].items():
            value = (mix.get("values") or {}).get(d)
            rows.append({"method": method, "seed": int(seed), "strategy": name.strategy,
                         "allocation": name.allocation, "temperature": mix.get("temperature"),
                         "domain": d, "value": value, "weight": mix["weights"][d],
                         "share": mix["weights"][d] / total if total else None,
                         "count": int(n), "available": int(mix["available"][d]),
                         "uniform": uniform[d],
                         "budget": sum(mix["counts"].values()) + int(mix.get("n_short") or 0),
                         "n_short": int(mix.get("n_short") or 0),
                         "equals_uniform": mix["counts"] == uniform,
                         "same_data": same[(method, seed)][0],
                         "trains": same[(method, seed)][1]})
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(
        schema=SCHEMA)
