"""Which data-mixture runs a config asks for, and what each one's name says.

A mixture run is ``<method>-mix_<name>``. ``<name>`` is a strategy (``mixture.strategies``:
where the per-domain values come from) and, for ``sts``, the allocation rule that turns the
scores into shares (``mixture.allocations``, stsflow.mixture.allocate):

    sts              the paper's rule, proportional (the name finished runs already carry)
    sts_<rule>       another rule of the sts strategy: softmax, above_min, rank
    uniform, oracle  equal shares; shares proportional to |Δ| of the plain run (the ceiling)

The paper's rule keeps the bare name ``sts`` so that a config that adds a contrast rule keeps
its finished ``-mix_sts`` runs, and the rules of one config run side by side, each its own run.
``oracle`` stays proportional: |Δ| has a meaningful zero (no change), which the scores lack.

``allocation_params`` is what a run's recipe carries about its rule beyond its name: nothing
for the paper's rule (so a finished ``-mix_sts`` run keeps its parameters), the temperature
for ``softmax``. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

# How a data-mixture run splits its replay budget over the domains: by the predictor's scores,
# equally, or by the plain run's |Δ| (stsflow.mixture.allocate)
MIX_STRATEGIES = ("sts", "uniform", "oracle")
# How the sts strategy turns the domains' scores into shares (stsflow.mixture.allocate's
# ALLOCATIONS, kept equal by a test): the paper's rule first
STS_ALLOCATIONS = ("proportional", "softmax", "above_min", "rank")
PAPER_RULE = STS_ALLOCATIONS[0]  # proportional: the faithful reproduction (docs/method.md)
# every name a mixture run's -mix_<name> can carry, longest first (a pattern's alternation then
# tries sts_rank before sts)
MIX_NAMES = tuple(sorted(MIX_STRATEGIES + tuple(f"sts_{a}" for a in STS_ALLOCATIONS[1:]),
                         key=lambda n: (-len(n), n)))


@dataclass(frozen=True)
class MixRun:
    """A mixture run's ``strategy`` and, for ``sts``, its ``allocation`` rule (None otherwise).
    ``str()`` is the ``<name>`` of ``-mix_<name>``."""

    strategy: str
    allocation: str | None = None

    def __post_init__(self):
        if self.strategy not in MIX_STRATEGIES:
            raise ValueError(f"unknown mixture strategy {self.strategy!r}; expected one of "
                             f"{', '.join(MIX_STRATEGIES)}")
        if (self.strategy == "sts") != (self.allocation is not None):
            raise ValueError("an allocation rule belongs to the sts strategy, and only to it")
        if self.allocation is not None and self.allocation not in STS_ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}; expected one of "
                             f"{', '.join(STS_ALLOCATIONS)}")

    @classmethod
    def parse(cls, name: str) -> "MixRun":
        """The strategy and rule of a ``-mix_<name>`` (``RunMethod.mix``)."""
        name = str(name)
        if name == "sts":
            return cls("sts", PAPER_RULE)
        if name.startswith("sts_") and name[4:] in STS_ALLOCATIONS[1:]:
            return cls("sts", name[4:])
        if name in MIX_STRATEGIES:
            return cls(name)
        raise ValueError(f"unknown mixture run name {name!r}; expected one of "
                         f"{', '.join(all_names())}")

    def __str__(self) -> str:
        if self.allocation is None or self.allocation == PAPER_RULE:
            return self.strategy
        return f"{self.strategy}_{self.allocation}"

    @property
    def paper(self) -> bool:
        """The paper's rule (proportional to the score), or a strategy without a rule."""
        return self.allocation in (None, PAPER_RULE)


def all_names() -> list[str]:
    """Every ``<name>`` a mixture run can carry, strategies in their order, sts's rules after
    sts."""
    out = []
    for s in MIX_STRATEGIES:
        out += [str(MixRun(s, a)) for a in STS_ALLOCATIONS] if s == "sts" else [s]
    return out


def mix_names(mixture: dict) -> list[str]:
    """The ``<name>`` of every run a validated ``mixture:`` section asks for, in config order:
    each strategy, sts once per rule of ``allocations``."""
    out = []
    for s in mixture["strategies"]:
        out += ([str(MixRun(s, a)) for a in mixture["allocations"]] if s == "sts" else [s])
    return out


def allocation_params(name: str, mixture: dict) -> dict:
    """What a mixture run's recipe (rule ``params:``, Snakemake's rerun trigger) must carry about
    its allocation beyond its name (the name says the rule): ``{"temperature": ...}`` for
    ``sts_softmax``, so changing it reruns that run alone; ``{}`` for every other run, so the
    parameters of a run finished before the rules existed stay as they were."""
    if MixRun.parse(name).allocation == "softmax":
        return {"temperature": float(mixture["temperature"])}
    return {}
