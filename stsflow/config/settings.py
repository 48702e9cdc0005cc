"""Typed settings: the slice of the validated config that each job receives, as frozen dataclasses.

The JSON schema (``stsflow/schemas/config.schema.yaml``) is the only copy of every default: it
documents them next to each key, and validation fills them in. These classes therefore declare
no defaults for config keys. A job's settings are built from the (already filled) config slice
with ``build``, which refuses a missing or unknown key with the field named, and
``tests/config/test_settings.py`` checks each class's fields against the schema section it
mirrors, so a key cannot be added in one place and forgotten in the other. Tests and library
callers that want "the defaults plus a change" use ``defaults(section)`` (read from the schema).

Why not hold the defaults here and drop them from the schema: the schema is what users read and
what Snakemake's validator fills; one more source of defaults would be the second copy the
package had before (the fine-tuning recipe repeated all eighteen of its defaults).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from stsflow.config.schema import SCHEMA_PATH, ConfigError


@functools.cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        node = _schema()["$defs"][ref.split("/")[-1]]
    return node


def schema_section(path: str) -> dict:
    """The schema node of a dotted config path; ``*`` steps into a mapping's values
    (``models.*``), ``$defs.<name>`` names a shared definition (``$defs.sae.train``)."""
    parts = path.split(".")
    if parts[0] == "$defs":
        node, parts = _schema()["$defs"][parts[1]], parts[2:]
    else:
        node = _schema()
    for part in parts:
        node = _resolve(node)
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return _resolve(node)


def defaults(path: str) -> dict:
    """The schema's defaults of one section (keys without a default are left out)."""
    props = schema_section(path).get("properties", {})
    return {k: v["default"] for k, v in props.items() if "default" in v}


def with_defaults(cls, section: str, **changes):
    """``cls`` from the schema's defaults of ``section`` (those that are fields of ``cls``) with
    ``changes``: for tests and library callers, never a second copy of a default."""
    names = {f.name for f in dataclasses.fields(cls)}
    base = {k: v for k, v in defaults(section).items() if k in names}
    return build(cls, dict(base, **changes), section)


def without_inactive(cls, mapping: Mapping) -> dict:
    """A config slice as a rule passes it to its jobs: the keys of ``cls.OPTIONAL`` left out
    while they hold the schema's default (keys added once runs existed: at the default, which
    means "as before", they leave every existing job's parameters, Snakemake's rerun trigger,
    as they were)."""
    section = defaults(cls.SECTION)
    optional = getattr(cls, "OPTIONAL", ())
    return {k: v for k, v in mapping.items()
            if not (k in optional and k in section and v == section[k])}


def _tuple_field(tp) -> bool:
    tp = typing.get_origin(tp) or tp
    return tp is tuple


def build(cls, mapping: Mapping, where: str):
    """``cls`` from a config slice, every field present (validation filled the defaults), no key
    left over. Lists become tuples where the field is a tuple (settings are frozen: a job
    cannot change what it was given)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    optional = [k for k in getattr(cls, "OPTIONAL", ()) if k not in mapping]
    if optional:  # left out by the rule while inactive: the schema's default
        section = defaults(cls.SECTION)
        mapping = {**mapping, **{k: section[k] for k in optional}}
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    problems = [f"{where}.{k}: unknown setting for {cls.__name__}. Fix: remove it"
                for k in mapping if k not in fields]
    problems += [f"{where}.{k}: missing (the schema's default was not filled). Fix: validate the "
                 "config with stsflow.config.validate first, or give it"
                 for k in sorted(required - set(mapping))]
    if problems:
        raise ConfigError(problems)
    values = {}
    for k, v in mapping.items():
        tp = hints[k]
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            inner = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = inner[0] if len(inner) == 1 else tp
        if dataclasses.is_dataclass(tp) and isinstance(v, Mapping):
            v = build(tp, v, f"{where}.{k}")
        elif _tuple_field(tp) and isinstance(v, list):
            v = tuple(v)
        values[k] = v
    return cls(**values)


@dataclass(frozen=True)
class ModelSettings:
    """What the jobs of a model depend on (``models.<name>`` without its layer list, so adding a
    layer changes no other job's parameters)."""
    SECTION: typing.ClassVar[str] = "models.*"
    # read by the rules only (shape: the memory the rules request, stsflow.config.resources)
    NOT_PASSED: typing.ClassVar[tuple] = ("layers", "n_layers", "shape")

    source: dict
    dtype: str
    device: str
    chat_template: bool
    batch_size: int
    max_length: int | None
    OPTIONAL: typing.ClassVar[tuple] = ("batch_tokens",)
    # optional (null: no budget); passed to the jobs only when set (``without_inactive``)
    batch_tokens: int | None

    @classmethod
    def keys(cls) -> list[str]:
        """The config keys of ``models.<name>`` that the jobs receive."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def params(cls, model: Mapping) -> dict:
        """The rule parameter: the slice of a validated ``models.<name>`` its jobs depend on."""
        return without_inactive(cls, {k: model[k] for k in cls.keys()})

    @classmethod
    def from_config(cls, mapping: Mapping, where: str = "models.<model>") -> ModelSettings:
        return build(cls, mapping, where)

    @classmethod
    def with_defaults(cls, **changes) -> ModelSettings:
        return with_defaults(cls, cls.SECTION, **changes)


@dataclass(frozen=True)
class ExtractSettings:
    """One corpus's extraction: its token budget and demonstrations (``sts.sft_tokens`` and
    ``sts.t`` for an SFT set, ``sts.domain_tokens`` and ``sts.m`` for a domain), and the shard
    format. Built from the rule's parameter slice, which carries only the keys of its kind so that
    changing an SFT budget never reruns a domain's extraction."""
    SECTION: typing.ClassVar[str] = "sts"
    KIND_KEYS: typing.ClassVar[dict] = {"sft": ("sft_tokens", "t"),
                                        "domain": ("domain_tokens", "m")}
    SHARED: typing.ClassVar[tuple] = ("feat_dtype", "row_group_rows", "query_tokens",
                                      "sample_seed", "context_check", "control_seed")

    kind: str
    tokens: int
    demonstrations: int
    feat_dtype: str
    row_group_rows: int
    query_tokens: str
    sample_seed: int
    context_check: str
    control_seed: int  # seed of the random-direction encoder (features.panel)

    @classmethod
    def params(cls, kind: str, sts: Mapping) -> dict:
        """The rule parameter: the slice of ``sts`` that a ``kind`` extraction depends on."""
        return {k: sts[k] for k in cls.KIND_KEYS[kind] + cls.SHARED}

    @classmethod
    def with_defaults(cls, kind: str, **changes) -> ExtractSettings:
        """A ``kind`` extraction from the schema's ``sts`` defaults with ``changes`` (config keys:
        ``t``, ``sft_tokens``, ...)."""
        return cls.from_params(kind, cls.params(kind, dict(defaults("sts"), **changes)))

    @classmethod
    def from_params(cls, kind: str, params: Mapping) -> ExtractSettings:
        budget, demos = cls.KIND_KEYS[kind]
        rest = {k: v for k, v in params.items() if k not in (budget, demos)}
        return build(cls, dict(rest, kind=kind, tokens=params[budget],
                               demonstrations=params[demos]), "sts")


@dataclass(frozen=True)
class CorpusSettings:
    """An SFT set (``sft.<name>``) or a domain (``domains.<name>``) to materialise: its sources,
    record schema, field mapping, ``max_items`` and the seed of that sample (``sts.sample_seed``).
    An SFT set has ``source``; a domain has ``test`` and ``demos`` (and ``subject``)."""
    # an SFT set's target domain is read by the report, a domain's pool by materialize_pool,
    # never by materialisation of the test split (the rule leaves both out, so setting them
    # reruns nothing upstream)
    NOT_PASSED: typing.ClassVar[tuple] = ("target", "pool")  # pool: its own rule, as a source

    schema: str
    fields: dict
    max_items: int | None
    sample_seed: int
    source: dict | None = None  # SFT sets only
    test: dict | None = None  # domains only
    demos: dict | None = None  # domains only
    subject: str | None = None  # domains only

    @classmethod
    def from_config(cls, mapping: Mapping, where: str) -> CorpusSettings:
        return build(cls, mapping, where)

    @classmethod
    def params(cls, corpus: Mapping, sample_seed: int) -> dict:
        """The rule parameter: a corpus's own config plus the seed of its max_items sample."""
        spec = {k: v for k, v in corpus.items() if k not in cls.NOT_PASSED}
        return dict(spec, sample_seed=sample_seed)

    @classmethod
    def pool_params(cls, domain: Mapping, sample_seed: int) -> dict:
        """A domain's pool split as a corpus of its own (materialize_pool), read whole."""
        return {"source": domain["pool"], "schema": domain["schema"],
                "fields": domain["fields"], "max_items": None, "sample_seed": sample_seed}


@dataclass(frozen=True)
class SaeTrainSettings:
    """``models.<m>.layers.<L>.sae.train``: an SAE trained here with sae-lens."""
    SECTION: typing.ClassVar[str] = "$defs.sae.train"

    architecture: str
    width: int
    k: int
    l1_coefficient: float
    tokens: int
    batch_tokens: int
    lr: float
    context_length: int
    seed: int
    corpora: tuple[str, ...] | None


@dataclass(frozen=True)
class SaeSettings:
    """``models.<m>.layers.<L>.sae``: exactly one of ``registry``, ``hub``, ``local``, ``train``,
    plus what every SAE shares (held-out evaluation, an accepted hook mismatch)."""
    SECTION: typing.ClassVar[str] = "$defs.sae"

    accept_hook: str | None
    eval_tokens: int
    eval_corpora: tuple[str, ...] | None
    name: str | None = None  # keys the outputs (config.saes); not passed to prepare_sae's job
    registry: dict | None = None
    hub: dict | None = None
    local: dict | None = None
    train: SaeTrainSettings | None = None

    @classmethod
    def from_config(cls, mapping: Mapping, where: str = "sae") -> SaeSettings:
        return build(cls, mapping, where)

    @classmethod
    def params(cls, sae: Mapping) -> dict:
        """The rule parameter: an SAE's config without its name (the name is in the path;
        renaming reruns nothing that the path does not)."""
        return {k: v for k, v in sae.items() if k != "name"}

    @classmethod
    def with_defaults(cls, **changes) -> SaeSettings:
        """Defaults of ``$defs.sae`` with ``changes``; a ``train`` mapping gets the defaults of
        ``$defs.sae.train`` under its own changes."""
        if isinstance(changes.get("train"), Mapping):
            changes["train"] = dict(defaults(SaeTrainSettings.SECTION), **changes["train"])
        return with_defaults(cls, cls.SECTION, **changes)


@dataclass(frozen=True)
class EvalSettings:
    """``evaluate``: the metrics run on every domain and how."""
    SECTION: typing.ClassVar[str] = "evaluate"
    OPTIONAL: typing.ClassVar[tuple] = ("batch_tokens", "generate_backend", "lm_eval_args")

    metrics: tuple[str, ...]
    k_shot: int
    loglik_k_shot: int
    max_new_tokens: int
    max_context: int
    chat_template: bool
    batch_size: int
    n_boot: int
    # optional, passed only when not the schema's defaults (``without_inactive``), so that results
    # evaluated before they existed keep their parameters: a token budget, the generate metric's
    # engine and its own settings
    batch_tokens: int | None
    generate_backend: str
    lm_eval_args: dict

    @classmethod
    def from_config(cls, mapping: Mapping) -> EvalSettings:
        return build(cls, mapping, "evaluate")

    @classmethod
    def params(cls, evaluate: Mapping) -> dict:
        """The rule parameter: the validated ``evaluate`` section, the optional keys left out
        while inactive (``without_inactive``)."""
        return without_inactive(cls, evaluate)

    @classmethod
    def with_defaults(cls, **changes) -> EvalSettings:
        return with_defaults(cls, cls.SECTION, **changes)

    def as_dict(self) -> dict:
        """As the config gives it (keys sorted, lists): recorded in the evaluation's metadata."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in sorted(dataclasses.asdict(self).items())}


@dataclass(frozen=True)
class ReportSettings:
    """``report`` without ``primary`` (resolved against the run by analysis.correlation) and
    ``matrix`` (the cross-SFT page's declaration, read by the matrix job)."""
    SECTION: typing.ClassVar[str] = "report"
    NOT_PASSED: typing.ClassVar[tuple] = ("primary", "matrix")

    n_boot: int
    n_perm: int
    seed: int

    @classmethod
    def from_config(cls, mapping: Mapping) -> ReportSettings:
        return build(cls, {k: v for k, v in mapping.items() if k not in cls.NOT_PASSED},
                     "report")


@dataclass(frozen=True)
class CardSettings:
    """``cards``: how many feature cards per shift vector and what each shows."""
    SECTION: typing.ClassVar[str] = "cards"

    n_top: int
    contexts: int
    window: int
    lens_tokens: int

    @classmethod
    def from_config(cls, mapping: Mapping) -> CardSettings:
        return build(cls, mapping, "cards")

    @classmethod
    def with_defaults(cls, **changes) -> CardSettings:
        return with_defaults(cls, cls.SECTION, **changes)


@dataclass(frozen=True)
class FinetuneSettings:
    """One fine-tuning run: the ``finetune`` recipe for one method and seed. ``sample_seed`` is
    ``sts.sample_seed`` (only passed when ``max_items`` draws a sample); ``deterministic`` is not a
    config key (always on in the workflow; tests may turn it off)."""
    SECTION: typing.ClassVar[str] = "finetune"
    NOT_PASSED: typing.ClassVar[tuple] = ("enabled", "methods")  # read by the rules only
    # passed to some runs only (the runs of a method that shards, when above 1), as each method's
    # own section is passed to its runs alone
    PER_RUN: typing.ClassVar[tuple] = ("processes",)
    OPTIONAL: typing.ClassVar[tuple] = ("micro_batch_tokens",)

    method: str  # a run method (stsflow.mode.RunMethod): full, lora, sae_select-<select>-k<K>
    seed: int
    epochs: int
    lr: float
    batch_size: int  # effective batch (examples per optimizer step)
    micro_batch_size: int  # examples per forward pass; accumulation = batch / micro
    max_length: int
    weight_decay: float
    betas: tuple[float, float]
    warmup_ratio: float
    grad_clip: float | None  # None or 0: no clipping
    max_steps: int | None  # cap on optimizer steps; None = no cap
    max_items: int | None
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_targets: tuple[str, ...]
    gradient_checkpointing: bool
    micro_batch_tokens: int | None  # optional, passed only when set (``without_inactive``)
    sample_seed: int = 0  # only meaningful with max_items (then the rule passes sts.sample_seed)
    deterministic: bool = True  # torch.use_deterministic_algorithms during training
    # full runs only: processes (one per GPU) sharding the run with FSDP
    # (stsflow.finetune.distributed); the rule passes it to full runs alone, when above 1
    processes: int = 1
    # sae_select runs only: {"layers": [...], "saes": [...]}, the map sites (config.saes.select_sites);
    # the rule passes it to those runs alone, so other runs' parameters do not depend on it
    sae_select: dict | None = None
    # grpo runs only: the RL recipe (finetune.grpo), passed to those runs alone
    grpo: dict | None = None
    # data-mixture runs only: the strategy and its settings (mixture:, resolved by the rule:
    # budget, top_k, predictor site, metric, the domains with replay); the job computes the counts
    mixture: dict | None = None

    def __post_init__(self):
        from stsflow.finetune.registry import methods
        from stsflow.mode import RunMethod

        run = RunMethod.parse(self.method)  # a clear error for an unknown method
        for m in methods().values():  # a method's own section reaches its runs, and only them
            if m.section and (run.method == m.name) != (getattr(self, m.section) is not None):
                raise ValueError(f"{m.section} (finetune.{m.section}) is given to {m.name} runs, "
                                 "and only them")
        if (run.mix is not None) != (self.mixture is not None):
            raise ValueError("mixture is given to data-mixture runs (-mix_<strategy>), and only them")
        if self.batch_size < 1 or self.micro_batch_size < 1:
            raise ValueError("batch_size and micro_batch_size must be >= 1")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of "
                             f"micro_batch_size ({self.micro_batch_size})")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.processes < 1 or (self.processes > 1 and not run.registered.shards):
            raise ValueError(f"finetune.processes: {self.processes} for a {run.method} run; it "
                             "must be >= 1, and above 1 only for a method that shards. Fix: "
                             "processes: 1, or a run of such a method")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 or None")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")
        # frozen: normalise through object.__setattr__ (YAML gives lists and ints)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

    @classmethod
    def params(cls, finetune: Mapping, method: str, *, model: Mapping, sample_seed: int,
               shards: int = 1, mixture: dict | None = None) -> dict:
        """The rule parameter (the recipe) of one run of ``method``: the ``finetune`` section
        without what the rules alone read, ``sample_seed`` where ``max_items`` draws a sample,
        the run's method section as the method builds it (stsflow.finetune.registry), its
        processes where it is sharded, and a data-mixture run's ``mixture`` (resolved by the
        workflow). Each run's parameters depend on nothing another run adds."""
        from stsflow.finetune.registry import methods
        from stsflow.mode import RunMethod

        sections = {m.section for m in methods().values() if m.section}
        out = without_inactive(cls, {k: v for k, v in finetune.items() if k not in
                                     (*cls.NOT_PASSED, *cls.PER_RUN, *sections)})
        if finetune["max_items"]:  # only then does the sample seed matter to fine-tuning
            out["sample_seed"] = sample_seed
        run = RunMethod.parse(method)
        m = run.registered
        if m.section:
            out[m.section] = m.recipe(finetune[m.section], model)
        if shards > 1:
            out["processes"] = shards
        if run.mix is not None:
            out["mixture"] = mixture
        return out

    @classmethod
    def from_recipe(cls, recipe: Mapping, method: str, seed: int) -> FinetuneSettings:
        return build(cls, dict(recipe, method=method, seed=seed), "finetune")

    @classmethod
    def with_defaults(cls, method: str | None = None, seed: int = 0,
                      **changes) -> FinetuneSettings:
        """The schema's recipe with ``changes`` (tests, library use): ``method`` defaults to the
        schema's first ``finetune.methods``; a method's own section only where given, as the rule
        passes it to that method's runs alone."""
        from stsflow.finetune.registry import methods

        for m in methods().values():
            if m.section:
                changes.setdefault(m.section, None)
        method = method or defaults(cls.SECTION)["methods"][0]
        return with_defaults(cls, cls.SECTION, method=method, seed=seed, **changes)

    @property
    def grad_accum(self) -> int:
        return self.batch_size // self.micro_batch_size

    @property
    def run(self):
        """The run method parsed (stsflow.mode.RunMethod): method, select, k."""
        from stsflow.mode import RunMethod

        return RunMethod.parse(self.method)
