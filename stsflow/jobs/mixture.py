"""Job of the data mixture's ``allocation`` rule: one mixture run's split of its replay budget,
before any fine-tuning (the workflow trains runs with the same split once:
stsflow.workflow.mixture). Torch-free: it reads the replay, the scores or the evaluations, and
writes a small JSON file."""

from __future__ import annotations

from stsflow.mixture.allocation_file import write_allocation
from stsflow.mixture.records import allocation as split
from stsflow.mode import RunMethod


def allocation(mixture: dict, method: str, seed: int, files, out) -> dict:
    """Write the allocation of run ``method`` at ``seed`` (``mixture``: its recipe's
    ``mixture``, stsflow.workflow.params.mixture_recipe; ``files``: its inputs,
    stsflow.workflow.bundles.FinetuneFiles) to ``out``; return it. The fine-tuning job of the
    run computes the same split from the same files (stsflow.mixture.records.mixture_records)."""
    name = RunMethod.parse(method).mix
    if name is None:
        raise ValueError(f"{method} is not a data-mixture run (-mix_<name>): it has no allocation")
    _, info = split(mixture, name, files)
    write_allocation(out, method, seed, mixture["domains"], info)
    return info
