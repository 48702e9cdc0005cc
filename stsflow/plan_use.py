"""What a plan's model jobs are estimated to use, beside what they request: ``stsflow plan``'s
second half.

The requests (``stsflow.plan``) are upper bounds: each job's runtime estimate times the margin,
rounded up, at least ten minutes. This module sums the estimates themselves
(``stsflow.workflow.costs.Costs.estimate``, no margin) in three parts: process start, loading the
weights, and compute. At 7B the prediction is mostly loading and start (minutes of forward passes
spread over dozens of jobs that each load the model), so the prediction-vs-validation ratio of
requests says little about use; this one separates them. The start is ``resources.START_S``, the
floor a request never goes below: for use it errs long, so the ratio errs towards the
prediction's side.

**Phases** (``costs.PHASES``): prediction (the base model's STS chain: SAEs, extractions,
encodings, gradients), validation (fine-tuning, every evaluation, the tuned models'
extractions), other (feature cards, replay). A Cost declaration says which.

**Grouping** (``job_groups: prediction``): the prediction's jobs run as one cluster job on one
GPU, one after another. Each still starts its own process, but only the group's first load of a
model reads the shared filesystem; the others read the node's page cache
(``resources.CACHE_BPS``, an assumption). Where the dry run grouped jobs (a profile with the
group's lines), its group jobs are used; otherwise the plan shows what one group job per model
would change: cluster jobs, loads and wall time (separate jobs: at least the longest chain of
dependent jobs, with as many GPUs as jobs and no queue wait; grouped: the group's jobs in
series)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace

HOUR = 3600.0


@dataclass
class JobUse:
    """One cluster job of a dry run: its phase, GPUs, request (seconds) and estimate."""

    rule: str
    model: str | None
    phase: str
    gpus: int
    requested_s: float
    parts: object = None  # resources.Seconds, None where there is no estimate
    cached_load_s: float = 0.0  # its load, read from the page cache instead
    group: int | None = None  # the dry run's group job
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    loads_model: bool = True

    def seconds(self, cached: bool = False) -> float:
        """Estimated seconds (the request where there is no estimate); ``cached``: the weights
        read from the node's page cache."""
        if self.parts is None:
            return self.requested_s
        load = self.cached_load_s if cached else self.parts.load
        return self.parts.start + load + self.parts.busy


def workflow_of(configfile, overrides: list[str]):
    """The workflow (``stsflow.workflow.Workflow``) of the config Snakemake would run: the file
    (default config.yaml) with the ``--config`` overrides (the profile's first)."""
    from pathlib import Path

    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    from stsflow.config import read_yaml, validate
    from stsflow.workflow import Workflow

    cfg = read_yaml(configfile or Path("config.yaml")) or {}
    update_config(cfg, parse_config(overrides))
    return Workflow(validate(cfg, check_sources=False), validated=True)


def job_uses(jobs: list[dict], local: set[str], wf) -> list[JobUse]:
    """The cluster jobs of a parsed dry run (``plan.parse_dry_run``) that run a model, each with
    its phase and estimate."""
    from stsflow.config.resources import CACHE_BPS, LOAD_BPS
    from stsflow.workflow.costs import COSTS

    inputs_of = {"finetune_sharded": "finetune"}  # a sharded run reads a run's inputs
    out = []
    for job in jobs:
        rule, res = job["rule"], job["resources"]
        if rule in local or rule not in COSTS:
            continue
        w = SimpleNamespace(**job["wildcards"])
        fn = getattr(wf.inputs, inputs_of.get(rule, rule), None)
        named = SimpleNamespace(**(fn(w) if fn else {}))
        parts = wf.costs.estimate(rule, w, named)
        out.append(JobUse(rule, getattr(w, "model", None), wf.costs.phase(rule, w),
                          int(res.get("gpu", 0) or 0),
                          float(res.get("runtime", 0) or 0) * 60, parts,
                          parts.load * LOAD_BPS / CACHE_BPS if parts else 0.0,
                          job.get("group"), job.get("input", []), job.get("output", []),
                          COSTS[rule].loads_model))
    return out


def groups(uses: list[JobUse], phase: str = "prediction") -> dict:
    """The group jobs of ``phase``: the dry run's where it grouped, else one per model (what
    ``job_groups: prediction`` with a large group-components makes)."""
    found = defaultdict(list)
    for u in uses:
        if u.phase == phase:
            found[u.group if u.group is not None else f"model {u.model}"].append(u)
    return dict(found)


def grouped_seconds(members: list[JobUse]) -> float:
    """A group job's estimated seconds on its one GPU: its jobs in series, each model read from
    the shared filesystem once, then from the page cache."""
    seen, total = set(), 0.0
    for u in members:
        cached = u.loads_model and u.model in seen
        if u.loads_model:
            seen.add(u.model)
        total += u.seconds(cached=cached)
    return total


def longest_chain(uses: list[JobUse], jobs: list[dict]) -> float:
    """Seconds of the longest chain of dependent jobs among ``uses`` (the jobs between them,
    local ones, count as instant): the wall time with as many GPUs as jobs."""
    import sys

    producer = {}
    for i, job in enumerate(jobs):
        for path in job.get("output", []):
            producer[path] = i
    cost = {}
    for u in uses:
        for path in u.outputs:
            cost[producer[path]] = max(cost.get(producer[path], 0.0), u.seconds())
    done: dict[int, float] = {}
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(jobs) + 100))

    def finish(i: int) -> float:
        if i not in done:
            before = [producer[p] for p in jobs[i].get("input", []) if p in producer]
            done[i] = cost.get(i, 0.0) + max((finish(j) for j in before), default=0.0)
        return done[i]

    ends = {producer[p] for u in uses for p in u.outputs}
    return max((finish(i) for i in ends), default=0.0)


@dataclass
class PhaseUse:
    phase: str
    jobs: int = 0
    submitted: int = 0  # cluster jobs (a group job counts once)
    loads_shared: int = 0
    loads_cached: int = 0
    start_h: float = 0.0
    load_h: float = 0.0
    compute_h: float = 0.0
    requested_h: float = 0.0
    unestimated: int = 0  # jobs without an estimate, counted at their request
    unestimated_h: float = 0.0

    @property
    def total_h(self) -> float:
        return self.start_h + self.load_h + self.compute_h + self.unestimated_h


def phase_uses(uses: list[JobUse], grouped: bool) -> list[PhaseUse]:
    """Per phase: jobs, cluster jobs, model loads, and device hours (GPUs held × hours; a job
    without GPUs: its own hours) of start, loading and compute, estimated, beside the requested.
    ``grouped``: the prediction's group jobs as in ``groups``."""
    from stsflow.workflow.costs import PHASES

    out = {p: PhaseUse(p) for p in PHASES}
    pred_groups = groups(uses) if grouped else {}
    cached = set()
    for members in pred_groups.values():
        seen = set()
        for u in (m for m in members if m.loads_model):
            if u.model in seen:
                cached.add(id(u))
            seen.add(u.model)
    for u in uses:
        p, width = out[u.phase], max(u.gpus, 1)
        p.jobs += 1
        p.requested_h += u.requested_s * width / HOUR
        is_cached = id(u) in cached
        p.loads_cached += u.loads_model and is_cached
        p.loads_shared += u.loads_model and not is_cached
        if u.parts is None:
            p.unestimated += 1
            p.unestimated_h += u.requested_s * width / HOUR
            continue
        p.start_h += u.parts.start * width / HOUR
        p.load_h += (u.cached_load_s if is_cached else u.parts.load) * width / HOUR
        p.compute_h += u.parts.busy * width / HOUR
    for phase, p in out.items():
        members = [u for u in uses if u.phase == phase]
        p.submitted = len(members) - (sum(len(g) - 1 for g in pred_groups.values())
                                      if phase == "prediction" else 0)
    return [p for p in out.values() if p.jobs]


def render_use(uses: list[JobUse], jobs: list[dict], candidates: int) -> str:
    """The use table, separate and grouped, the prediction-vs-validation ratio, and what
    grouping changes for the prediction."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    out = StringIO()
    console = Console(file=out, width=140, force_terminal=False)
    dry_grouped = any(u.group is not None for u in uses)
    views = [("separate jobs", False), ("grouped", True)]
    by_view = {name: {p.phase: p for p in phase_uses(uses, g)} for name, g in views}
    table = Table(title="estimated use (no margin) beside the requests, device hours (GPUs "
                        "held × hours)")
    for col in ("phase", "as", "jobs", "cluster jobs", "model loads (shared fs / cache)",
                "start h", "load h", "compute h", "no estimate: requested h", "total h",
                "requested h"):
        table.add_column(col, justify="left" if col in ("phase", "as") else "right")
    for name, phases in by_view.items():
        for p in phases.values():
            table.add_row(p.phase, name, str(p.jobs), str(p.submitted),
                          f"{p.loads_shared} / {p.loads_cached}", f"{p.start_h:.2f}",
                          f"{p.load_h:.2f}", f"{p.compute_h:.2f}",
                          f"{p.unestimated_h:.1f} ({p.unestimated})" if p.unestimated else "-",
                          f"{p.total_h:.2f}", f"{p.requested_h:.1f}")
    console.print(table)
    first = by_view["grouped" if dry_grouped else "separate jobs"]  # as the run will go
    pred, val = first.get("prediction"), first.get("validation")
    if pred and val:
        def ratio(a, b):
            return f"{a / b:.0f}x" if b else "n/a"

        console.print(
            f"Predicting the {candidates} candidate SFT set(s) vs fine-tuning and evaluating "
            f"them: {pred.total_h:.2f} vs {val.total_h:.2f} device hours estimated "
            f"(validation/prediction {ratio(val.total_h, pred.total_h)}); requested "
            f"{pred.requested_h:.1f} vs {val.requested_h:.1f} "
            f"({ratio(val.requested_h, pred.requested_h)}).")
        if val.unestimated or pred.unestimated:
            console.print(f"{pred.unestimated + val.unestimated} job(s) have no estimate before "
                          "their data is materialised: counted at their request, so the "
                          "estimate of use is partly one of requests.")
        else:
            console.print(f"Compute alone: {pred.compute_h:.3f} vs {val.compute_h:.2f} "
                          f"({ratio(val.compute_h, pred.compute_h)}); the rest is process "
                          "starts and loads.")
    pred_uses = [u for u in uses if u.phase == "prediction"]
    if pred_uses:
        grouped = groups(uses)
        serial = max(grouped_seconds(m) for m in grouped.values())
        chain = longest_chain(pred_uses, jobs)
        loads = sum(u.loads_model for u in pred_uses)
        console.print(
            f"Grouping the prediction (job_groups: prediction"
            + (", as this profile does" if dry_grouped else ", which this profile does not")
            + f"): {len(pred_uses)} cluster jobs become {len(grouped)}; {loads} model loads "
            "from the shared filesystem become "
            f"{sum(len({u.model for u in m if u.loads_model}) for m in grouped.values())} (the "
            f"rest from the page cache); wall time at least {chain / 60:.0f} min as separate "
            f"jobs (as many GPUs as jobs, no queue wait), {serial / 60:.0f} min grouped (the "
            "longest group job: one GPU, its jobs in series).")
    return out.getvalue()
