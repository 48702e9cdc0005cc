"""A data-mixture run's allocation as a file: written by the workflow's ``allocation`` job
before any fine-tuning, read by the workflow to learn which runs train on the same data
(stsflow.workflow.mixture) and by the report (the allocation table). JSON: the run's
``method`` and ``seed``, its replay ``domains`` in the config's order, and the allocation of
stsflow.mixture.records.allocation (``strategy``, ``weights``, ``counts``, ``n_short``,
``available``, ``values``, and for sts its ``allocation`` rule). Torch-free and light: the
Snakemake process reads these files while it builds the DAG."""

from __future__ import annotations

from pathlib import Path

from stsflow.io.files import read_json, write_json

KEYS = ("strategy", "weights", "counts", "n_short", "available", "values")


def write_allocation(path: Path | str, method: str, seed: int, domains: list[str],
                     allocation: dict) -> None:
    write_json(path, {"method": method, "seed": int(seed), "domains": list(domains),
                      **allocation})


def read_allocation(path: Path | str) -> dict:
    """The allocation written at ``path`` (its per-domain entries in the config's domain order,
    as the fine-tuning job records them), with ``method`` and ``seed``. A file without the keys
    of an allocation is refused, naming it."""
    data = read_json(path)
    missing = [k for k in ("method", "seed", "domains", *KEYS) if k not in data]
    if missing:
        raise ValueError(f"{path}: not a data-mixture allocation (no {', '.join(missing)}). "
                         "Fix: delete it; the workflow's allocation job writes it again")
    order = data["domains"]
    for key in ("weights", "counts", "available", "values"):
        if isinstance(data[key], dict):
            data[key] = {d: data[key][d] for d in order if d in data[key]}
    return data
