"""Run identifiers: the one place where extraction modes and shift names are parsed.

An extraction *mode* says which model runs on a corpus and what context precedes each query:

    plain                    base model, chat head only                      (SFT sets and domains)
    icl                      base model, head + the domain's m worked examples        (domains)
    icl-s<seed>              base model, head + t SFT demonstrations drawn with seed  (SFT sets)
    tuned-<method>-s<seed>   fine-tuned model, chat head only: h(x; Θ') (docs/method.md#true-shift)   (SFT sets)

where ``<method>`` is a *run method* (``RunMethod``): a registered fine-tuning method
(``stsflow.finetune.registry``), with its variant's suffix when it has variants (e.g. a
selective fine-tuning run ``sae_select-top-k100``), trained here; or ``posthoc_<label>``, a tuned
model trained elsewhere and imported as the configured post-hoc pair ``posthoc.<label>``. The
patterns are built from the registry, so a registered method needs nothing here.

A *shift* names a shift vector of an SFT set:

    s<seed>                  predicted: icl-s<seed> against plain (docs/method.md#shift-vector)
    true-<method>-s<seed>    true: tuned-<method>-s<seed> against plain (docs/method.md#true-shift)

Rules (wildcard constraints, inputs), job functions and scripts all go through ``Mode`` and
``Shift``; nothing else splits these strings.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

# A data-mixture run's -mix_<name>: its strategy and, for sts, its allocation rule (the mixture
# package owns the names: stsflow.mixture.runs)
from stsflow.mixture.runs import MIX_NAMES, MIX_STRATEGIES, mix_names  # noqa: E402,F401

# A run method: a registered fine-tuning method, with its variant's suffix when it has variants
# (stsflow.finetune.registry.Variant), possibly trained on a data mixture (-mix_<strategy>): one
# run per variant, so adding a variant or a strategy adds only its own runs.
# A post-hoc pair's run (posthoc.<label>) is imported, never trained here: ``posthoc_<label>``.
POSTHOC_PREFIX = "posthoc_"
# letters and digits in words joined by single "_" or "-" (vendor-sft): a run name still reads one
# way, the seed being the last "-s<digits>"
LABEL_PATTERN = r"[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*"
_MIX = rf"(?:-mix_(?:{'|'.join(MIX_NAMES)}))?"


def _methods() -> dict:
    from stsflow.finetune.registry import methods

    return methods()


@functools.cache
def trained_method_pattern(shards_only: bool = False) -> str:
    """Run names of the runs fine-tuned here (every registered method and variant, with or
    without a mixture); ``shards_only``: of the methods ``finetune.processes`` shards."""
    names = [m.pattern() for m in _methods().values() if m.shards or not shards_only]
    return rf"(?:{'|'.join(names) or '(?!)'}){_MIX}"


@functools.cache
def mixture_method_pattern() -> str:
    """Run names of the data-mixture runs: a trained run's name with its -mix_<name>."""
    names = [m.pattern() for m in _methods().values()]
    return rf"(?:{'|'.join(names) or '(?!)'})-mix_(?:{'|'.join(MIX_NAMES)})"


@functools.cache
def posthoc_method_pattern() -> str:
    return rf"{POSTHOC_PREFIX}{LABEL_PATTERN}"


@functools.cache
def run_method_pattern() -> str:
    return rf"{trained_method_pattern()}|{posthoc_method_pattern()}"


@functools.cache
def mode_pattern() -> str:
    return rf"plain|icl|icl-s\d+|tuned-(?:{run_method_pattern()})-s\d+"


@functools.cache
def shift_pattern() -> str:
    return rf"s\d+|true-(?:{run_method_pattern()})-s\d+"


def _describe() -> str:
    names = [m.name if m.variant is None else f"{m.name}-{m.variant.describe}"
             for m in _methods().values()]
    return f"{', '.join(names)} or {POSTHOC_PREFIX}<label>"


@functools.cache
def _mode_re(pattern: str) -> re.Pattern:
    return re.compile(pattern)


@dataclass(frozen=True)
class RunMethod:
    """A run's method: the registered fine-tuning ``method``, its variant's fields (``options``,
    e.g. sae_select's select and k) and for a data-mixture run its ``mix`` strategy; or
    ``posthoc`` with the pair's ``label`` (a tuned model imported, not trained here). ``str()`` is
    the name used in paths, modes and tables."""

    method: str
    options: tuple = field(default=())  # the variant's (field, value) pairs, in field order
    mix: str | None = None
    label: str | None = None

    @classmethod
    @functools.cache
    def parse(cls, text: str) -> "RunMethod":
        text = str(text)
        m = re.fullmatch(rf"({posthoc_method_pattern()})", text)
        if m:
            return cls("posthoc", label=text[len(POSTHOC_PREFIX):])
        body, mix = text, None
        mm = re.fullmatch(rf"(.+)-mix_({'|'.join(MIX_NAMES)})", text)
        if mm:
            body, mix = mm.groups()
        for name, method in sorted(_methods().items(), key=lambda kv: -len(kv[0])):
            if method.variant is None:
                if body == name:
                    return cls(name, mix=mix)
            elif body.startswith(name + "-"):
                fields = method.variant.parse(body[len(name) + 1:])
                if fields is not None:
                    return cls(name, tuple(fields.items()), mix)
        raise ValueError(f"unknown fine-tuning run method {text!r}; expected {_describe()}, a "
                         f"trained one possibly followed by -mix_<{'|'.join(MIX_NAMES)}>")

    def option(self, name: str):
        """A field of the run's variant (None when the method has no such field)."""
        return dict(self.options).get(name)

    @property
    def select(self):  # selective fine-tuning's selection and K (None for other methods)
        return self.option("select")

    @property
    def k(self):
        return self.option("k")

    @property
    def posthoc(self) -> bool:
        """An imported tuned model (a post-hoc pair), not a run fine-tuned here."""
        return self.method == "posthoc"

    @property
    def unmixed(self) -> "RunMethod":
        """The same method trained on the SFT set alone (a mixture run's ``none`` strategy)."""
        return RunMethod(self.method, self.options, label=self.label)

    @property
    def registered(self):
        """The registry entry of a run fine-tuned here (stsflow.finetune.registry.Method)."""
        if self.posthoc:
            raise ValueError(f"{self} is a post-hoc pair, not a registered fine-tuning method")
        return _methods()[self.method]

    def __str__(self) -> str:
        if self.posthoc:
            return f"{POSTHOC_PREFIX}{self.label}"
        base = self.method
        if self.options:
            base = f"{self.method}-{self.registered.variant.format(dict(self.options))}"
        return base if self.mix is None else f"{base}-mix_{self.mix}"


def run_methods(finetune: dict) -> list[str]:
    """The run methods of a validated ``finetune`` config section, in config order: each method
    of ``methods``, a method with variants expanded into one run per configured variant."""
    out = []
    for name in finetune["methods"]:
        method = _methods()[name]
        out += method.variants(finetune.get(method.section) if method.section else None)
    return out


def mixture_runs(finetune: dict, mixture: dict) -> list[str]:
    """The data-mixture runs (mixture:): the mixture's method (default: the first run method)
    with each strategy, sts once per allocation rule (-mix_sts for the paper's proportional
    rule, -mix_sts_<rule> for another); none when the mixture is off."""
    if not mixture["enabled"]:
        return []
    base = mixture["method"] or run_methods(finetune)[0]
    return [f"{base}-mix_{n}" for n in mix_names(mixture)]


def posthoc_method(label: str) -> str:
    """The run method of the post-hoc pair ``posthoc.<label>``."""
    return str(RunMethod("posthoc", label=label))


@dataclass(frozen=True)
class Mode:
    """What runs in one extraction: ``kind`` in {plain, icl, tuned}."""

    kind: str
    seed: int | None = None
    method: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Mode":
        m = _mode_re(rf"^(?:(plain)|(icl)|icl-s(\d+)|tuned-((?:{run_method_pattern()}))-s(\d+))$"
                     ).match(str(text))
        if not m:
            raise ValueError(f"unknown extraction mode {text!r}; expected plain, icl, icl-s<seed> "
                             f"or tuned-<method>-s<seed> (method: {_describe()})")
        plain, icl, icl_seed, method, tuned_seed = m.groups()
        if plain:
            return cls("plain")
        if icl:
            return cls("icl")
        if icl_seed is not None:
            return cls("icl", seed=int(icl_seed))
        return cls("tuned", seed=int(tuned_seed), method=method)

    @classmethod
    def plain(cls) -> "Mode":
        return cls("plain")

    @classmethod
    def sft_icl(cls, seed: int) -> "Mode":
        return cls("icl", seed=int(seed))

    @classmethod
    def domain_icl(cls) -> "Mode":
        return cls("icl")

    @classmethod
    def tuned(cls, method: str, seed: int) -> "Mode":
        return cls("tuned", seed=int(seed), method=str(RunMethod.parse(method)))

    def __str__(self) -> str:
        if self.kind == "plain":
            return "plain"
        if self.kind == "icl":
            return "icl" if self.seed is None else f"icl-s{self.seed}"
        return f"tuned-{self.method}-s{self.seed}"

    @property
    def demonstrations(self) -> str:
        """Which demonstrations precede each query: "none", "sft" (t, seeded) or "domain" (m)."""
        if self.kind != "icl":
            return "none"
        return "domain" if self.seed is None else "sft"

    @property
    def tuned_model(self) -> bool:
        return self.kind == "tuned"

    @property
    def paired(self) -> bool:
        """Paired token by token with the plain run of the same corpus (differences accumulated)."""
        return self.kind != "plain"

    def check_corpus(self, corpus_kind: str) -> None:
        """Refuse a mode that is not defined on this kind of corpus."""
        ok = (self.kind == "plain"
              or (self.demonstrations == "domain" and corpus_kind == "domain")
              or (self.demonstrations == "sft" and corpus_kind == "sft")
              or (self.tuned_model and corpus_kind == "sft"))
        if not ok:
            raise ValueError(f"extraction mode {self} is not defined on {corpus_kind} corpora")


@dataclass(frozen=True)
class Shift:
    """A shift vector of an SFT set: predicted (ICL, ``method`` None) or true (fine-tuned)."""

    seed: int
    method: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Shift":
        m = _mode_re(rf"^(?:s(\d+)|true-((?:{run_method_pattern()}))-s(\d+))$").match(str(text))
        if not m:
            raise ValueError(f"unknown shift {text!r}; expected s<seed> or true-<method>-s<seed> "
                             f"(method: {_describe()})")
        pred_seed, method, true_seed = m.groups()
        if pred_seed is not None:
            return cls(int(pred_seed))
        return cls(int(true_seed), method)

    def __str__(self) -> str:
        return f"s{self.seed}" if self.method is None else f"true-{self.method}-s{self.seed}"

    @property
    def true(self) -> bool:
        return self.method is not None

    @property
    def mode(self) -> Mode:
        """The extraction paired against the plain run to make this shift."""
        return Mode.tuned(self.method, self.seed) if self.true else Mode.sft_icl(self.seed)

    def key(self) -> dict:
        """Columns identifying the run in STS rows: seed, and method for true shifts."""
        return {"seed": self.seed} if not self.true else {"method": self.method,
                                                          "seed": self.seed}
