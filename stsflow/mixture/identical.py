"""Data-mixture runs that would train on the same data, so that they can be trained once.

What a mixture run trains on (jobs.validate.mixture_records, finetune.train): the SFT set,
sampled as the plain run's, then for each replay domain in the config's order the first
``counts[d]`` items of a permutation of that domain's replay drawn with
``numpy.random.default_rng([seed, crc32(domain)])``; the example order and every other draw of
training are seeded by the seed alone. The strategy, its values, weights and name enter nothing
but the counts. So among the runs of one (model, SFT set, method, seed), with the same replay
(files and ``mixture.keep_cut``), the same counts per domain are the same training data, example
for example: the same run. A run whose counts are all 0 trains on the SFT set alone, as the
plain run (the strategy "none") does.

**Which run trains** (``TRAIN_ORDER``): the one whose allocation needs least, i.e. the plain run
(no replay), then ``uniform`` (no prediction), the paper's ``sts``, the contrast rules of sts in
their registry order (stsflow.mixture.runs.STS_ALLOCATIONS), ``oracle`` last (it needs the plain
run's evaluation). The choice depends on the run names alone, never on the config's order or on
what is on disk, so reordering the strategies never moves a group's training to another run,
and every machine trains the same run of a group; adding a run earlier in the order to a group
(uniform beside an sts run with uniform's split) trains the new run, as adding any run does, and
the finished one is no longer read. The run that trains never waits on an input that another
member of its group does not need.
Torch-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stsflow.mixture.runs import MixRun, all_names
from stsflow.mode import RunMethod

# the "none" strategy (the plain run) first, uniform, then every sts rule, oracle last
TRAIN_ORDER = ("none", "uniform", *(n for n in all_names() if n not in ("uniform", "oracle")),
               "oracle")


@dataclass(frozen=True)
class SameData:
    """Runs that train on the same data: ``runs`` in ``TRAIN_ORDER``, ``trains`` the first of
    them (the one to fine-tune; the others are the same run under other names), ``counts`` the
    replay items per domain they share (domains with none left out)."""

    trains: str
    runs: tuple[str, ...]
    counts: dict[str, int]

    @property
    def shared(self) -> bool:
        """More than one run name for this training data."""
        return len(self.runs) > 1


def _order(run: str) -> int:
    mix = RunMethod.parse(run).mix
    return TRAIN_ORDER.index("none" if mix is None else str(MixRun.parse(mix)))


def in_training_order(runs) -> list[str]:
    """Runs of one method (plain and mixture runs) in ``TRAIN_ORDER``: whether a run trains
    depends only on the allocations of the runs before it."""
    return sorted(runs, key=_order)


def identical_runs(counts: Mapping[str, Mapping[str, int]]) -> list[SameData]:
    """Group runs by their training data. ``counts`` maps a run method (``lora``,
    ``lora-mix_sts``, ``lora-mix_uniform``, …) to its replay items per domain (the ``counts``
    of its allocation; a domain left out counts 0; the plain run: ``{}``). Every run must be one
    method of one (model, SFT set, seed) with one replay, as the caller groups them. Returns
    every run in exactly one group, groups ordered by their training run."""
    runs = list(counts)
    bases = {str(RunMethod.parse(r).unmixed) for r in runs}
    if len(bases) > 1:
        raise ValueError(f"runs of different methods ({', '.join(sorted(bases))}) never train "
                         "on the same data: group the runs of one method, seed and SFT set")
    groups: dict[frozenset, list[str]] = {}
    for run in runs:
        bad = {d: n for d, n in counts[run].items() if int(n) != n or n < 0}
        if bad:
            raise ValueError(f"{run}: counts must be whole numbers >= 0, got {bad}")
        key = frozenset((d, int(n)) for d, n in counts[run].items() if n)
        groups.setdefault(key, []).append(run)
    out = [SameData(trains=members[0], runs=tuple(members), counts=dict(sorted(key)))
           for key, members in ((k, sorted(v, key=_order)) for k, v in groups.items())]
    return sorted(out, key=lambda g: _order(g.trains))
