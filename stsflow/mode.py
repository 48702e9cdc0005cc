"""Run identifiers: the one place where extraction modes and shift names are parsed.

An extraction *mode* says which model runs on a corpus and what context precedes each query:

    plain                    base model, chat head only                      (SFT sets and domains)
    icl                      base model, head + the domain's m worked examples        (domains)
    icl-s<seed>              base model, head + t SFT demonstrations drawn with seed  (SFT sets)
    tuned-<method>-s<seed>   fine-tuned model, chat head only: SPEC §5.4's h(x; Θ')   (SFT sets)

where ``<method>`` is a *run method*: ``full``, ``lora``, ``grpo`` (RL), or a selective fine-tuning variant
``sae_select-<top|random>-k<K>`` (``RunMethod``), trained here; or ``posthoc_<label>``, a tuned
model trained elsewhere and imported as the configured post-hoc pair ``posthoc.<label>``.

A *shift* names a shift vector of an SFT set:

    s<seed>                  predicted: icl-s<seed> against plain (SPEC §3)
    true-<method>-s<seed>    true: tuned-<method>-s<seed> against plain (SPEC §5.4)

Rules (wildcard constraints, inputs), job functions and scripts all go through ``Mode`` and
``Shift``; nothing else splits these strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Fine-tuning methods that can produce a tuned model (the finetune registry's names).
FINETUNE_METHODS = ("full", "lora", "sae_select", "grpo")
# How sae_select picks its K dimensions: the top-K of the predicted shift, or K drawn at random
# with the run's seed (the control).
SELECT_MODES = ("top", "random")

# How a data-mixture run splits its replay budget over the domains (stsflow.mixture).
MIX_STRATEGIES = ("sts", "uniform", "oracle")
# How the sts strategy turns the domains' scores into shares (stsflow.mixture.allocate): the
# paper's proportional rule is the run -mix_sts, every other rule its own run -mix_sts_<rule>;
# MIX_NAMES: every name a mixture run's -mix_<name> can carry (longest first, so a pattern's
# alternation tries sts_rank before sts)
STS_ALLOCATIONS = ("proportional", "softmax", "above_min", "rank")
MIX_NAMES = tuple(sorted(MIX_STRATEGIES + tuple(f"sts_{a}" for a in STS_ALLOCATIONS[1:]),
                         key=lambda n: (-len(n), n)))

# A run method: a method alone, or sae_select with its selection and K, either one possibly
# trained on a data mixture (-mix_<strategy>): one run per variant, so adding a K, a selection
# or a strategy adds only its own runs.
# A post-hoc pair's run (posthoc.<label>) is imported, never trained here: ``posthoc_<label>``.
POSTHOC_PREFIX = "posthoc_"
# letters and digits in words joined by single "_" or "-" (vendor-sft): a run name still reads one
# way, the seed being the last "-s<digits>"
LABEL_PATTERN = r"[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*"
_BASE = rf"full|lora|grpo|sae_select-(?:{'|'.join(SELECT_MODES)})-k[1-9]\d*"
TRAINED_METHOD_PATTERN = rf"(?:{_BASE})(?:-mix_(?:{'|'.join(MIX_NAMES)}))?"
POSTHOC_METHOD_PATTERN = rf"{POSTHOC_PREFIX}{LABEL_PATTERN}"
# full fine-tuning, plain or on a data mixture: the runs finetune.processes shards
FULL_METHOD_PATTERN = rf"full(?:-mix_(?:{'|'.join(MIX_NAMES)}))?"
_METHOD = rf"{TRAINED_METHOD_PATTERN}|{POSTHOC_METHOD_PATTERN}"
RUN_METHOD_PATTERN = _METHOD
_RUN_METHOD_RE = re.compile(
    rf"^(?:(?:(full|lora|grpo)|(sae_select)-({'|'.join(SELECT_MODES)})-k([1-9]\d*))"
    rf"(?:-mix_({'|'.join(MIX_NAMES)}))?|{POSTHOC_PREFIX}({LABEL_PATTERN}))$")
MODE_PATTERN = rf"plain|icl|icl-s\d+|tuned-(?:{_METHOD})-s\d+"
SHIFT_PATTERN = rf"s\d+|true-(?:{_METHOD})-s\d+"
_MODE_RE = re.compile(rf"^(?:(plain)|(icl)|icl-s(\d+)|tuned-((?:{_METHOD}))-s(\d+))$")
_SHIFT_RE = re.compile(rf"^(?:s(\d+)|true-((?:{_METHOD}))-s(\d+))$")


@dataclass(frozen=True)
class RunMethod:
    """A run's method: the registered fine-tuning ``method``, for sae_select its ``select`` mode
    and ``k``, and for a data-mixture run its ``mix`` strategy; or ``posthoc`` with the pair's
    ``label`` (a tuned model imported, not trained). ``str()`` is the name used in paths, modes
    and tables."""

    method: str
    select: str | None = None
    k: int | None = None
    mix: str | None = None
    label: str | None = None

    @classmethod
    def parse(cls, text: str) -> "RunMethod":
        m = _RUN_METHOD_RE.match(str(text))
        if not m:
            raise ValueError(f"unknown fine-tuning run method {text!r}; expected full, lora or "
                             f"sae_select-<{'|'.join(SELECT_MODES)}>-k<K>, possibly followed by "
                             f"-mix_<{'|'.join(MIX_NAMES)}>, or {POSTHOC_PREFIX}<label>")
        plain, sel, select, k, mix, label = m.groups()
        if label is not None:
            return cls("posthoc", label=label)
        return cls(plain, mix=mix) if plain else cls(sel, select, int(k), mix)

    @property
    def posthoc(self) -> bool:
        """An imported tuned model (a post-hoc pair), not a run fine-tuned here."""
        return self.method == "posthoc"

    @property
    def unmixed(self) -> "RunMethod":
        """The same method trained on the SFT set alone (a mixture run's ``none`` strategy)."""
        return RunMethod(self.method, self.select, self.k, label=self.label)

    def __str__(self) -> str:
        if self.posthoc:
            return f"{POSTHOC_PREFIX}{self.label}"
        base = self.method if self.select is None else f"{self.method}-{self.select}-k{self.k}"
        return base if self.mix is None else f"{base}-mix_{self.mix}"


def run_methods(finetune: dict) -> list[str]:
    """The run methods of a validated ``finetune`` config section, in config order: each method
    of ``methods``, sae_select expanded into one run per (k, select)."""
    out = []
    for method in finetune["methods"]:
        if method != "sae_select":
            out.append(method)
            continue
        sel = finetune["sae_select"]
        out += [str(RunMethod(method, select, int(k))) for k in sel["k"] for select in sel["select"]]
    return out


def mixture_runs(finetune: dict, mixture: dict) -> list[str]:
    """The data-mixture runs (mixture:): the mixture's method (default: the first run method)
    with each strategy, sts once per allocation rule (-mix_sts for the paper's proportional
    rule, -mix_sts_<rule> for another); none when the mixture is off."""
    if not mixture["enabled"]:
        return []
    base = mixture["method"] or run_methods(finetune)[0]
    from stsflow.mixture.runs import mix_names

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
        m = _MODE_RE.match(str(text))
        if not m:
            raise ValueError(f"unknown extraction mode {text!r}; expected plain, icl, icl-s<seed> "
                             "or tuned-<method>-s<seed> (method: full, lora, "
                             "sae_select-<top|random>-k<K> or posthoc_<label>)")
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
        m = _SHIFT_RE.match(str(text))
        if not m:
            raise ValueError(f"unknown shift {text!r}; expected s<seed> or true-<method>-s<seed> "
                             "(method: full, lora, sae_select-<top|random>-k<K> or "
                             "posthoc_<label>)")
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
