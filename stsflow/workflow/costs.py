"""What each job that runs a model or an SAE costs: one declaration per job kind (``COSTS``),
from which the rule's memory requests (host and GPU) and runtime request are derived
(``stsflow.config.resources``: the model's shape, dtype, batch, step and tokens). A rule with a
cost declaration is a cluster job; every other rule runs in the Snakemake process.

A declaration gives, per job, the *memory* facts (``need``: the step, batch and SAE of one job)
and the *work* (``work``: the tokens it processes, from the config where it fixes them and from
the materialised data otherwise; Snakemake evaluates a job's resources again once its inputs
exist, so a submitted job carries the data's figure). Before the data exists (a dry run,
``stsflow plan``) a dataset's ``max_items`` bounds it, else the rule's fixed request stands."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from stsflow.config import resources
from stsflow.config.facts import model_shape, registry_id_facts, runs_on_cpu
from stsflow.mode import Mode, RunMethod


@dataclass(frozen=True)
class Cost:
    """One job kind's cost: ``need(jobs, w)`` the keywords of ``resources.need`` beyond the
    model's (the step first), ``work(jobs, w, input)`` those of ``resources.work`` (None: no
    estimate), and the fixed requests when the model's shape or the job's tokens are unknown
    (``host_mb``, ``minutes``)."""

    need: Callable
    work: Callable
    host_mb: int
    minutes: int
    threads: int | None = None  # fixed threads (fine-tuning); None: the device's share
    # a job holding several GPUs (a sharded fine-tune): ``gpus(costs, w)`` units and threads per
    # GPU; None: one unit on a GPU
    gpus: Callable | None = None
    # what the job serves (``PHASES``), or ``phase(w)`` where that depends on the job
    phase: str | Callable = "other"
    loads_model: bool = True  # whether the job loads the model's weights (an encoding does not)


# What a model job serves: the prediction (the STS chain of the base model: everything a
# prediction-only run needs), its validation (fine-tuning, the evaluations, the tuned models'
# extractions for the true shift), or neither (feature cards, the data mixture's replay).
# `stsflow plan` sums GPU hours by phase; the prediction's jobs can share a cluster job.
PREDICTION, VALIDATION, OTHER = "prediction", "validation", "other"
PHASES = (PREDICTION, VALIDATION, OTHER)


# Fine-tuning takes two threads on a CPU too: its backward passes use them, and a fixed count keeps
# a run's weights the same whatever the machine's core count (float sums in torch's kernels
# depend on the thread count).
FINETUNE_THREADS = 2


class Costs:
    """The cost model of one workflow (``stsflow.workflow.core.Workflow``): requests of every
    model job, as Snakemake's ``threads:`` and ``resources:`` callables."""

    def __init__(self, wf):
        self.wf = wf
        self.speed = resources.Speed.from_config(wf.config["throughput"])
        self._shapes: dict = {}

    def shape(self, model: str):
        """The model's shape (read once per process: a GGUF header, a config.json), or None."""
        if model not in self._shapes:
            self._shapes[model] = model_shape(self.wf.models[model], self.wf.base_dir)[0]
        return self._shapes[model]

    # -- facts the declarations share -----------------------------------------------------------

    def sae_entry(self, w) -> dict:
        return self.wf.layer_sae(w.model, w.layer, w.sae)

    def sae_width(self, w) -> int | None:
        """The width of the SAE a job trains or encodes with, where the config says it (a trained
        SAE's, a registry id's that names it; else None)."""
        sae = self.sae_entry(w)
        if "train" in sae:
            return sae["train"]["width"]
        if "registry" in sae:
            shape = self.shape(w.model)
            return registry_id_facts(**sae["registry"],
                                     hidden_size=shape.hidden_size if shape else None)["width"]
        return None

    def merges_adapter(self, method: str | None) -> bool:
        """Whether loading the run's model merges an adapter into a float32 base: a method's
        adapter (stsflow.finetune.registry), a post-hoc PEFT adapter."""
        if method is None:
            return False
        run = RunMethod.parse(method)
        if run.posthoc:
            return "peft" in self.wf.posthoc[run.label]["tuned"]
        return run.registered.adapter

    def plan_step(self, method: str) -> str:
        """The resource model's step of a run method (its registry entry's ``plan_as``)."""
        return RunMethod.parse(method).registered.plan_as

    @staticmethod
    def tuned(w) -> bool:
        """A job on a fine-tuned model loads float32 weights (a full fine-tune's checkpoint, the
        base an adapter is merged into)."""
        if hasattr(w, "method"):
            return True
        return hasattr(w, "mode") and Mode.parse(w.mode).method is not None

    @staticmethod
    def per_item(path, cap, rows_cap):
        """(items, tokens per item) of a Parquet input: the file's figures when it exists, else
        ``rows_cap`` items of ``cap`` tokens (None: unknown)."""
        size = resources.text_size(path)
        if size is None:
            return (rows_cap, cap) if rows_cap else (None, None)
        rows, chars = size
        return rows, min(cap, resources.tokens_per_item(rows, chars))

    # -- requests ---------------------------------------------------------------------------------

    def need(self, rule: str, w):
        """What one job of a model rule needs (resources.Need), or None when the model's shape is
        unknown offline and the config gives none."""
        shape = self.shape(w.model)
        if shape is None:
            return None
        m = self.wf.models[w.model]
        job = {"batch": m["batch_size"], "tokens": m["max_length"] or 1024,
               **COSTS[rule].need(self, w)}
        # only `device: cpu` puts the working memory on the host: `auto` is planned for a GPU
        # (the machine that plans a cluster run, a login node, may have none)
        return resources.need(job.pop("step"), shape, dtype=m["dtype"],
                              device_is_cpu=m["device"] == "cpu", **job)

    def minutes(self, rule: str, w, input, attempt: int = 1) -> int | None:
        """Runtime request of one job (minutes), or None when its model's shape or its token
        count is unknown."""
        shape = self.shape(w.model)
        job = COSTS[rule].work(self, w, input) if shape is not None else None
        if job is None:
            return None
        m = self.wf.models[w.model]
        return resources.runtime_min(
            resources.work(job.pop("step"), shape, dtype=m["dtype"], **job), shape, self.speed,
            device_is_cpu=m["device"] == "cpu", threads=self.threads(rule, w), attempt=attempt)

    def threads(self, rule: str, w) -> int:
        """Local threads of a model job: its fixed count, else one on a CPU (most of a small
        model's job is process start and loading, so jobs run side by side, one per core) and two
        on a GPU. The SLURM profile sets its own (set-threads)."""
        cost = COSTS[rule]
        if cost.gpus is not None:
            return cost.threads * max(self.wf.ft["processes"], 1)
        if cost.threads is not None:
            return cost.threads
        return 1 if runs_on_cpu(self.wf.models[w.model]["device"]) else 2

    def gpu_units(self, w) -> int:
        """One unit of the `gpu` resource on a GPU (the local profile allows one at a time: two
        models never share a GPU); none on a CPU."""
        return 0 if runs_on_cpu(self.wf.models[w.model]["device"]) else 1

    def resources(self, rule: str) -> dict[str, Callable]:
        """The ``resources:`` of a model rule: its GPU unit, host and GPU memory and runtime,
        each grown with the retry attempt where it is a request."""
        cost = COSTS[rule]

        def mem_mb(wc, attempt):
            got = self.need(rule, wc)
            return (got.host_mb if got else cost.host_mb) * attempt

        def gpu_mem_mb(wc):
            got = self.need(rule, wc)
            return got.gpu_mb if got else 0

        def runtime(wc, input, attempt):
            got = self.minutes(rule, wc, input, attempt)
            return got if got is not None else cost.minutes * attempt

        gpu = self.gpu_units if cost.gpus is None else (lambda w: cost.gpus(self, w))
        return {"gpu": gpu, "mem_mb": mem_mb, "gpu_mem_mb": gpu_mem_mb, "runtime": runtime}

    def rule_threads(self, rule: str) -> Callable:
        return lambda w: self.threads(rule, w)

    # -- what a job serves, and its group ---------------------------------------------------------

    def phase(self, rule: str, w) -> str:
        p = COSTS[rule].phase
        return p(w) if callable(p) else p

    def group(self, rule: str) -> Callable:
        """The ``group:`` of a model rule's jobs: the prediction's jobs form the group
        ``prediction`` when the config asks for it (``job_groups``, set by a cluster profile),
        so that one cluster job holds a GPU and runs them one after another. A tuned model's
        extraction never joins: it waits for fine-tuning, and with it the whole group would.
        Snakemake ignores groups when it runs jobs itself (local runs)."""
        def group(w):
            if self.wf.config["job_groups"] == PREDICTION and self.phase(rule, w) == PREDICTION:
                return PREDICTION
            return None
        return group

    def estimate(self, rule: str, w, input) -> resources.Seconds | None:
        """Estimated seconds of one job in parts (start, load, compute; no margin), or None
        where its model's shape or its token count is unknown: what ``stsflow plan`` sums as
        use, beside the requests."""
        shape = self.shape(w.model)
        job = COSTS[rule].work(self, w, input) if shape is not None else None
        if job is None:
            return None
        m = self.wf.models[w.model]
        return resources.parts(
            resources.work(job.pop("step"), shape, dtype=m["dtype"], **job), shape, self.speed,
            device_is_cpu=m["device"] == "cpu", threads=self.threads(rule, w))

    @cached_property
    def model_rules(self) -> frozenset[str]:
        return frozenset(COSTS)


# -- the declarations ---------------------------------------------------------------------------


def _tokens(c: Costs, w) -> int:
    return c.wf.sts["sft_tokens"] if w.kind == "sft" else c.wf.sts["domain_tokens"]


def _extract_need(c: Costs, w) -> dict:
    return dict(step="extract", sae_width=c.sae_width(w),
                merges_adapter=c.merges_adapter(Mode.parse(w.mode).method))


def _by_mode(w) -> str:
    """An extraction serves the prediction on the base model, the validation on a tuned one."""
    return VALIDATION if Mode.parse(w.mode).tuned_model else PREDICTION


def _extract_work(c: Costs, w, input) -> dict:
    return dict(step="extract", tokens=_tokens(c, w), layer=int(w.layer),
                sae_width=c.sae_width(w), float32_weights=c.tuned(w))


def _gradients_work(c: Costs, w, input) -> dict:
    # the job takes at most grad_examples records (sft: a sample; a domain: its worked
    # examples), cut to the model's max_length
    examples = c.wf.sts["grad_examples"]
    cap = c.wf.models[w.model]["max_length"] or 1024
    rows, per = c.per_item(input.data, cap, examples)
    n = min(examples, rows)
    return dict(step="gradients", tokens=n * per, calls=n)


def _sae_work(c: Costs, w, input) -> dict:
    sae = c.sae_entry(w)
    trains = "train" in sae
    return dict(step="sae", tokens=sae["train"]["tokens"] if trains else 0, layer=int(w.layer),
                eval_tokens=sae["eval_tokens"], sae_width=c.sae_width(w) if trains else None)


def _finetune_need(c: Costs, w) -> dict:
    ft = c.wf.ft
    return dict(step=c.plan_step(w.method), batch=ft["micro_batch_size"], tokens=ft["max_length"],
                checkpointing=ft["gradient_checkpointing"], shards=c.wf.run_shards(w.method))


def _finetune_work(c: Costs, w, input) -> dict | None:
    ft, sft = c.wf.ft, c.wf.sfts[w.sft]
    caps = [x for x in (sft["max_items"], ft["max_items"]) if x]
    rows, per = c.per_item(input.sft_items, ft["max_length"], min(caps) if caps else None)
    if rows is None:
        return None
    n = min(rows, ft["max_items"] or rows)
    batch = ft["batch_size"]
    steps = ft["epochs"] * math.ceil(n / batch)  # as finetune.train.total_steps counts them
    examples = ft["epochs"] * n
    if ft["max_steps"] and ft["max_steps"] < steps:
        examples = ft["max_steps"] * min(batch, n)
    return dict(  # each of a sharded run's ranks takes its share of the micro-batches
        step=c.plan_step(w.method),
        tokens=math.ceil(examples * per / c.wf.run_shards(w.method)),
        checkpointing=ft["gradient_checkpointing"])


def _eval_need(c: Costs, w) -> dict:
    from stsflow.evaluate.registry import metric_costs

    gen = metric_costs(c.wf.eval["metrics"], c.wf.eval).new_tokens
    return dict(step="inference", batch=c.wf.eval["batch_size"], new_tokens=gen,
                merges_adapter=c.merges_adapter(getattr(w, "method", None)))


def _eval_work(c: Costs, w, input) -> dict | None:
    """Every metric's passes over the domain's items, as its registry entry declares them
    (stsflow.evaluate.registry.MetricCost)."""
    from stsflow.evaluate.registry import metric_costs

    m, ev = c.wf.models[w.model], c.wf.eval
    rows, per = c.per_item(input.test, m["max_length"] or 1024,
                           c.wf.domains[w.domain]["max_items"])
    if rows is None:
        return None
    cost = metric_costs(ev["metrics"], ev)
    job = dict(step="inference", tokens=cost.passes * rows * per, calls=rows * cost.calls,
               batch=ev["batch_size"], float32_weights=c.tuned(w))
    if cost.new_tokens:
        _, demo = c.per_item(input.demos, m["max_length"] or 1024, ev["k_shot"] or 1)
        new = cost.new_tokens
        context = min(ev["k_shot"] * (demo or 0) + per, max(ev["max_context"] - new, 1))
        job.update(gen_items=rows, new_tokens=new, context=context)
    return job


COSTS: dict[str, Cost] = {
    "extract": Cost(_extract_need, _extract_work, 8000, 120, phase=_by_mode),
    "encode": Cost(lambda c, w: dict(step="encode", sae_width=c.sae_width(w)),
                   lambda c, w, input: dict(step="encode", tokens=_tokens(c, w),
                                            sae_width=c.sae_width(w)), 8000, 60,
                   phase=_by_mode, loads_model=False),
    "gradients": Cost(lambda c, w: dict(step="gradients", batch=1), _gradients_work, 8000, 60,
                      phase=PREDICTION),
    "prepare_sae": Cost(lambda c, w: dict(step="sae", sae_width=c.sae_width(w),
                                          trains_sae="train" in c.sae_entry(w)),
                        _sae_work, 8000, 120, phase=PREDICTION),
    "finetune": Cost(_finetune_need, _finetune_work, 16000, 240, threads=FINETUNE_THREADS,
                     phase=VALIDATION),
    "evaluate_base": Cost(_eval_need, _eval_work, 8000, 120, phase=VALIDATION),
    "evaluate_tuned": Cost(_eval_need, _eval_work, 8000, 120, phase=VALIDATION),
    # the LM head over a few SAE decoder rows (logit lens): the weights, nothing per token
    "cards": Cost(lambda c, w: dict(step="inference", batch=1, tokens=1),
                  lambda c, w, input: dict(step="inference",
                                           tokens=c.wf.config["cards"]["n_top"]), 8000, 30),
    # greedy answers to a domain's pool items: generation, as the generate metric plans it
    "replay": Cost(lambda c, w: dict(step="inference", batch=c.wf.mix["batch_size"],
                                     new_tokens=c.wf.mix["max_new_tokens"]),
                   lambda c, w, input: None, 8000, 60),  # no runtime estimate: the fixed request
}
# A full fine-tune sharded over finetune.processes GPUs of one node (FSDP), as one job holding
# them all. On `device: cpu` its ranks are gloo processes and take no GPU (not runs_on_cpu:
# `auto` is planned for GPUs, as the machine that plans, a login node, may have none).
COSTS["finetune_sharded"] = Cost(
    _finetune_need, _finetune_work, 16000, 240, threads=FINETUNE_THREADS,
    gpus=lambda c, w: 0 if c.wf.models[w.model]["device"] == "cpu" else c.wf.ft["processes"],
    phase=VALIDATION)
