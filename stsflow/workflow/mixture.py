"""Which data-mixture runs train, learnt while the workflow runs.

Two mixture runs of one method and seed with the same replay items per domain train on the same
data, example for example (stsflow.mixture.identical): the workflow fine-tunes, evaluates and
scores only the first of them in ``TRAIN_ORDER`` (the plain run, uniform, sts, the contrast
rules, oracle), and the report names it for the others. The counts exist only once the replay,
the scores (sts) and the plain run's evaluations (oracle) do, so each mixture run's split is a
job of its own, the ``allocation`` checkpoint (rules/validate.smk), whose file
(``Layout.allocation_file``) the aggregates read their runs from: observed, oracle_table,
overlap, coverage, cards and report. Nothing else asks which runs train: a run's own jobs
(fine-tuning, evaluations, true shift, scores) are only requested by those aggregates, so a
run whose data another has is never trained, and a finished run's inputs and parameters are
what they were.

Whether a run trains needs the allocations of that run and of the runs before it in
``TRAIN_ORDER`` only, so the uniform and sts runs are scheduled as soon as their splits exist,
before the oracle's (which waits for the plain run's evaluations).

``lookup(model, sft, method, seed)`` gives a run's allocation file, or raises ``Pending`` with
the file to make first: ``checkpoint_lookup`` in the workflow (rules/common.smk); elsewhere
(a Workflow outside Snakemake, tests) ``file_lookup``, the file where it exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stsflow.mixture.allocation_file import read_allocation
from stsflow.mixture.identical import identical_runs, in_training_order
from stsflow.mode import RunMethod

Run = tuple[str, int]  # (run method, seed)


class Pending(Exception):
    """A run's allocation is not made yet: ``target`` is the file to make first (in the workflow,
    a checkpoint target: Snakemake makes it, then asks again)."""

    def __init__(self, target):
        super().__init__(str(target))
        self.target = target


def file_lookup(layout, root: Path | str = ".") -> Callable:
    """Allocation files where they exist under ``root`` (the workflow's working directory)."""
    def lookup(model: str, sft: str, method: str, seed) -> str:
        path = layout.allocation_file(model, sft, method, seed)
        if not (Path(root) / path).is_file():
            raise Pending(path)
        return path
    return lookup


def checkpoint_lookup(checkpoint: Callable) -> Callable:
    """Allocation files as Snakemake's checkpoint gives them: ``checkpoint()`` returns
    ``checkpoints.allocation`` (defined after the lookup is made). A checkpoint not run yet
    raises ``Pending`` with its target, flagged so that Snakemake schedules it and evaluates
    the asking job's inputs again once it has run; returning the targets of every pending
    allocation at once (``Runs.pending``) lets them all run side by side."""
    def lookup(model: str, sft: str, method: str, seed) -> str:
        from snakemake.exceptions import IncompleteCheckpointException

        try:
            return checkpoint().get(model=model, sft=sft, method=method,
                                    seed=str(seed)).output[0]
        except IncompleteCheckpointException as e:
            raise Pending(e.targetfile) from None
    return lookup


@dataclass(frozen=True)
class Runs:
    """The tuned models of one (model, SFT set) as far as the allocations made so far tell:
    ``trained``, the runs that exist as their own training (or imported: post-hoc pairs), whose
    jobs the aggregates read; ``same``, each mixture run whose data a run before it has -> that
    run (it is neither trained nor evaluated); ``allocations``, the file of every mixture run
    whose allocation is made; ``pending``, the allocation files still to make (a run after one
    of them in ``TRAIN_ORDER`` is in neither ``trained`` nor ``same`` yet)."""

    trained: list[Run]
    same: dict[Run, str] = field(default_factory=dict)
    allocations: dict[Run, str] = field(default_factory=dict)
    pending: list = field(default_factory=list)

    def trained_here(self) -> list[Run]:
        """The trained runs fine-tuned by this workflow (not the imported post-hoc pairs)."""
        return [(m, s) for m, s in self.trained if not RunMethod.parse(m).posthoc]

    def pending_inputs(self) -> dict[str, object]:
        """The pending allocations as named inputs: the asking job waits for them."""
        return {f"pending:{i}": t for i, t in enumerate(self.pending)}


class MixtureRuns:
    """Which runs of a workflow (``stsflow.workflow.core.Workflow``) train, from the allocation
    files ``lookup`` finds; their paths are relative to ``root`` (the working directory, by
    default the workflow's base directory)."""

    def __init__(self, wf, lookup: Callable | None = None, root: Path | str | None = None):
        self.wf = wf
        self.root = Path(wf.base_dir if root is None else root)
        self.lookup = lookup or file_lookup(wf.layout, self.root)

    def resolve(self, model: str, sft: str) -> Runs:
        runs = self.wf.runs(model, sft)
        mixed = [(m, s) for m, s in runs if RunMethod.parse(m).mix is not None]
        if not mixed:
            return Runs(list(runs))
        files, counts, pending = {}, {}, []
        for m, s in mixed:  # every lookup, so that all pending allocations are made at once
            try:
                files[(m, s)] = self.lookup(model, sft, m, s)
            except Pending as p:
                pending.append(p.target)
                continue
            counts[(m, s)] = read_allocation(self.root / files[(m, s)])["counts"]
        same, unknown = {}, set()
        # each method's runs at each seed: the plain run (no replay) and its mixture runs
        families: dict[Run, list[str]] = {}
        for m, s in mixed:
            families.setdefault((str(RunMethod.parse(m).unmixed), s), []).append(m)
        for (plain, seed), members in families.items():
            known = {plain: {}}
            ordered = in_training_order(members)
            for i, m in enumerate(ordered):
                if (m, seed) not in counts:  # this run and every later one wait for it
                    unknown |= {(r, seed) for r in ordered[i:]}
                    break
                known[m] = counts[(m, seed)]
            for group in identical_runs(known):
                same.update({(r, seed): group.trains for r in group.runs if r != group.trains})
        trained = [r for r in runs if r not in same and r not in unknown]
        return Runs(trained, same, files, pending)
