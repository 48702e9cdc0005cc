"""The registry of fine-tuning methods, with everything the workflow needs to know about each.

A method is registered once (``register_method``), by the module that implements it
(``stsflow.finetune.methods`` for the built-in ones, or a plugin: ``stsflow.plugins``). Its entry
says how it trains (``prepare``/``finish`` around the SFT loop, or its own ``train``) and what
the workflow plans around it, so that no other module names a method:

* ``adapter``: the checkpoint is an adapter that the jobs loading the run merge into the base
  (host memory for a float32 base; ``merges_adapter`` in the resource model);
* ``shards``: ``finetune.processes`` shards its runs over the GPUs of a node;
* ``section``: its own ``finetune.<section>`` settings, passed to its runs alone, as
  ``recipe(section, model)`` builds them from the validated config (``None``: it has none);
* ``sites``: for a method anchored at SAE sites, ``sites(model, section)`` lists its
  ``(layer, sae)``; its runs read the SAE and the run seed's predicted shift at each site, and
  every job loading the tuned model reads the SAEs;
* ``variant``: a method that runs in several variants names each run with a suffix
  (``Variant``); the run names of a config come from ``variants(section)``;
* ``plan_as``: the resource model's step, ``adapter`` (a frozen model and a small trainable
  part) or ``full_weights`` (weights, gradients and optimizer states of the whole model);
* ``sft_loop``: it trains on SFT records with the SFT loop, so a data mixture can feed it;
* ``vllm``: vLLM can serve its checkpoint (``evaluate.generate_backend: lm_eval_vllm``);
* ``recipe_keys``: ``finetune`` keys only this method reads (checked by config validation only
  when a configured method reads them);
* ``context(recipe, inputs, device)``: what its job loads before training, from the run's
  inputs (e.g. the SAE sites), as ``(context for prepare, metadata for the checkpoint)``;
* ``problems(config, section)``: its own config checks (messages naming the field and the fix).

This module imports no torch: the workflow reads it while it plans.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

PLAN_STEPS = ("adapter", "full_weights")


@dataclass(frozen=True)
class Variant:
    """The variants of a method: ``pattern`` matches the suffix after ``<name>-`` (named groups,
    converted by ``fields``), ``expand(section)`` gives the configured variants (dicts of those
    fields), ``format(fields)`` the suffix of one."""

    pattern: str
    fields: dict[str, type]
    expand: Callable[[dict], list[dict]]
    format: Callable[[dict], str]
    describe: str  # how the suffix reads, for error messages

    def parse(self, suffix: str) -> dict | None:
        m = re.fullmatch(self.pattern, suffix)
        if not m:
            return None
        return {k: tp(m.group(k)) for k, tp in self.fields.items()}


@dataclass(frozen=True)
class Method:
    """A fine-tuning method (see the module's docstring for the workflow-side facts).
    ``prepare(model, cfg, context)`` returns the module to train (its trainable parameters
    marked; ``context``: what the job loaded for it, e.g. the SAE sites' chosen dimensions),
    ``finish(trained)`` the module to save; ``train``, when given, replaces the SFT loop:
    ``train(model, tokenizer, records, recipe, use_chat_template=, log=, context=, resume=)``
    returning what ``stsflow.finetune.train.finetune`` does, resuming and checkpointing as it
    does (``stsflow.resume``)."""

    name: str
    prepare: Callable
    finish: Callable
    train: Callable | None = None
    adapter: bool = False
    shards: bool = False
    section: str | None = None
    recipe: Callable | None = None
    sites: Callable | None = None
    variant: Variant | None = None
    plan_as: str = "full_weights"
    sft_loop: bool = True
    vllm: bool = True
    recipe_keys: tuple[str, ...] = field(default_factory=tuple)
    context: Callable | None = None
    problems: Callable | None = None
    about: str = ""

    def variants(self, section: dict | None) -> list[str]:
        """The run names of this method under a validated ``finetune`` section's settings."""
        if self.variant is None:
            return [self.name]
        return [f"{self.name}-{self.variant.format(v)}" for v in self.variant.expand(section)]

    def pattern(self) -> str:
        """A regular expression of its run names (without a mixture suffix), with no capturing
        group (it is embedded in the mode and shift patterns and in wildcard constraints)."""
        name = re.escape(self.name)
        if self.variant is None:
            return name
        return f"{name}-(?:{re.sub(r'[(][?]P<[A-Za-z_][A-Za-z0-9_]*>', '(?:', self.variant.pattern)})"


FINETUNE_REGISTRY: dict[str, Method] = {}


def register_method(name: str, prepare: Callable, finish: Callable, **facts) -> Method:
    """Register a fine-tuning method under ``name`` (the value users write in
    ``finetune.methods``)."""
    if name in FINETUNE_REGISTRY:
        raise ValueError(f"fine-tuning method {name!r} is registered twice")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"fine-tuning method {name!r}: use lower-case letters, digits and _")
    method = Method(name, prepare, finish, **facts)
    if method.plan_as not in PLAN_STEPS:
        raise ValueError(f"fine-tuning method {name!r}: plan_as must be one of {PLAN_STEPS}")
    if (method.section is None) != (method.recipe is None):
        raise ValueError(f"fine-tuning method {name!r}: a section comes with its recipe")
    FINETUNE_REGISTRY[name] = method
    return method


def methods() -> dict[str, Method]:
    """Every registered method: the built-in ones and the plugins' (``stsflow.plugins``)."""
    import importlib

    from stsflow import plugins

    importlib.import_module("stsflow.finetune.methods")  # the built-in ones register themselves
    plugins.load()
    return FINETUNE_REGISTRY


def method(name: str) -> Method:
    found = methods()
    if name not in found:
        raise ValueError(f"unknown fine-tuning method {name!r}; registered: {', '.join(found)}")
    return found[name]
