"""The registry of predictors. Each is registered once with what it needs, and scored per
(model, SFT set, layer, shift, N, domain) from a ``ScoreInputs``: the STS tables get one column
per entry (in registration order), the report one scatter plot and one forest-plot row each, and a
test keeps the schema's enum (report.primary.predictor) equal to the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from stsflow.features.stats import Stats

# Feature spaces a predictor can read: the SAE's features, the raw residual stream, and the
# random-direction encoder of the SAE's width and k (features.panel).
SPACES = ("sae", "resid", "randenc")


@dataclass(frozen=True)
class Predictor:
    name: str
    fn: Callable
    family: str  # "sts" (the paper's), "notebook", "raw", "random", "similarity", "probe",
    # "post_training" (its own Holm family: it never changes the pre-training ones' p-values)
    oracle: bool  # scored on the true shifted dimensions too (the ``_oracle`` rows)
    about: str
    post_training: bool = False  # needs the tuned model: scored on the ``_oracle`` rows only
    needs: tuple[str, ...] = ()  # inputs beyond the SAE's statistics and shift (NEEDS)


PREDICTORS: dict[str, Predictor] = {}

# What a predictor may read beyond the SAE's statistics and shift vector, each of which the
# workflow gathers only when some registered predictor needs it: the extraction's panel (the
# residual and random-encoder spaces' statistics and shifts, per-query pooled vectors, mean
# residuals), the authors' unaligned shift, the corpora's mean gradients (the gradients rule),
# and the domain's mean residuals before and after fine-tuning (the evaluation jobs).
NEEDS = ("panel", "unaligned", "gradients", "reps")


def register_predictor(name: str, *, family: str, oracle: bool, about: str,
                       post_training: bool = False, needs: tuple[str, ...] = ()):
    """``post_training``: the predictor needs the fine-tuned model, so it is scored only where
    one exists, on the true shift's rows (named ``<name>_oracle`` like the rest of them);
    ``needs``: its inputs beyond the SAE's statistics and shift (``NEEDS``)."""
    def wrap(fn):
        if name in PREDICTORS:
            raise ValueError(f"predictor {name!r} is registered twice")
        if post_training and not oracle:
            raise ValueError(f"predictor {name!r}: a post-training predictor is an oracle row")
        unknown = set(needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"predictor {name!r}: unknown needs {sorted(unknown)} (one of {NEEDS})")
        PREDICTORS[name] = Predictor(name, fn, family, oracle, about, post_training, tuple(needs))
        return fn
    return wrap


def needed_inputs() -> set[str]:
    """What the registered predictors read beyond the SAE's statistics and shift (``NEEDS``)."""
    return {need for p in PREDICTORS.values() for need in p.needs}


def oracle_predictors() -> list[str]:
    """Predictors scored on the true shift's rows (an ``_oracle`` column each)."""
    return [n for n, p in PREDICTORS.items() if p.oracle]


def pretraining_predictors() -> list[str]:
    """Predictors scored before any fine-tuning: the STS table's columns."""
    return [n for n, p in PREDICTORS.items() if not p.post_training]


@dataclass
class ScoreInputs:
    """What one domain's scores read: the shift vector of each space, the domain's plain and ICL
    statistics of each space, the panels (per-query pooled vectors, mean residual) of the
    domain's and the SFT set's plain runs, and their mean low-rank gradients."""

    n_top: int
    shifts: dict[str, pa.Table]
    plain: dict[str, Stats]
    icl: dict[str, Stats]
    domain_panel: Path | None = None
    sft_panel: Path | None = None
    sft_grad: Path | None = None
    domain_grad: Path | None = None
    control_seed: int = 0
    probe_folds: int = 5
    layer: int | None = None
    reps_base: Path | None = None  # true shifts only: the domain's mean residual per layer
    reps_tuned: Path | None = None  # before and after this fine-tuning (features.reps)
    sft_plain: Stats | None = None  # predicted shifts: the SFT set's plain run (live dimensions)
    _dims: dict = field(default_factory=dict)

    def dims(self, space: str = "sae") -> np.ndarray:
        """D_N of a space (N = n_top): only dimensions that moved, never a tie broken by index,
        so possibly fewer than N (``scores.shift.shifted_dims``); empty when N exceeds the
        space's width."""
        from stsflow.scores.shift import shifted_dims

        if space not in self._dims:
            shift = self.shifts[space]
            self._dims[space] = (shifted_dims(shift, self.n_top) if self.n_top <= shift.num_rows
                                 else np.array([], dtype=np.int64))
        return self._dims[space]


def score(inputs: ScoreInputs, names: list[str]) -> dict:
    """The named predictors of one domain (NaN where a predictor is undefined, e.g. N above the
    residual width), the domain's token count and ``n_effective``, the size of the SAE's D_N
    (below N where fewer dimensions moved)."""
    out = {name: float(PREDICTORS[name].fn(inputs)) for name in names}
    return dict(out, n_tokens=int(inputs.plain["sae"].n_tokens),
                n_effective=int(len(inputs.dims("sae"))))
