"""The transfer matrix across candidate SFT sets: SFT set × domain, predicted (every registered
predictor at one site) and observed (every fine-tuning run and metric), with the normalisations
that make predicted scores comparable across SFT sets.

The per-SFT analysis (``analysis.correlation``) compares domains *within* one SFT set; the
matrix puts several candidate SFT sets side by side, so that a user can ask which candidate will
cost least on the domains they care about before any fine-tuning. Both matrices are tidy frames
(one row per cell and variant), ready for Parquet, with SFT sets and domains in one shared order
(the config's): ``order_frame`` sorts any frame that carries ``sft`` and ``domain`` by it.

**Site.** A prediction is read at one site: (layer, SAE, N, ICL seed). The decision a user makes
rests on one prediction, so the whole matrix uses one site, the pre-declared one
(``resolve_matrix_primary``): report.primary's layer, SAE and N, and the lowest of sts.seeds.
Every run of every SFT set is compared with that one prediction (the per-SFT reports pair the ICL
seed s with the fine-tuning seed s instead; with one seed, the default, the two agree).

**Normalisations** (``NORMALISATIONS``). A raw STS magnitude depends on the SFT set itself: its
D_N are other SAE dimensions, which fire more or less often on every domain (STS_act sums their
activations; STS_icl sums squared shifts of them), so one SFT set can score higher on every
domain without harming anything more. The paper validates STS only across domains for one SFT
set; nothing calibrates its level across SFT sets. Every normalisation here is an increasing
transformation within one SFT set, so each SFT set's own ordering of domains (and its per-SFT
correlation, up to ``rank``'s Spearman) is unchanged; they differ only in how SFT sets are put on
one scale:

- ``zscore`` (the default): (x − mean) / sd over the domains, per SFT set. It keeps exactly the
  information STS is validated for, a domain's position in its SFT set's profile, and puts every
  SFT set on one unitless scale; what it removes, the SFT set's overall level, is the part no
  validation supports. Its cost: an SFT set that truly harms every domain more cannot be seen as
  such (every SFT set has mean 0), so the decision is about *where* each candidate hurts
  relative to its own profile. ``none`` keeps the level, for users who accept it uncalibrated.
- ``rank``: (rank − 1) / (D − 1) within the SFT set (ties averaged): like ``zscore`` but robust
  to one domain with an extreme score, at the cost of the spacing between domains.
- ``target``: x / x(target domain), the score relative to the SFT set's own task
  (``sft.<name>.target``): "how much does this domain move relative to the domain fine-tuning is
  for". Scale-free under a multiplicative difference between SFT sets, but undefined (NaN) where
  the SFT set has no target domain or its score there is not positive (a ratio to a non-positive
  reference has no meaning; several baselines, e.g. similarities and probes, can be negative).
- ``none``: the raw score.

The mean and sd (and ranks) are taken over the *reference domains*: those every SFT set of the
matrix has a score for, so that all SFT sets are normalised on the same domains; a domain some
SFT set lacks is still normalised, with that reference.

**Harm** (``harm``). What "harm" means follows the declared target (report.primary.target):

- ``abs``: the observed harm of a cell is |Δ|, the magnitude of change that STS predicts
  (docs/method.md#what-sts-predicts). It is a *change*, not a loss: a gain counts as much as a loss, because STS does not
  predict the sign. "Least harmful" is then "least changed".
- ``signed``: the worsening, −Δ for a metric where higher is better (accuracy) and +Δ where lower
  is better (NLL), so that a larger value is always worse. It needs each metric's direction
  (``directions``: metric → higher_is_better, from the evaluation metrics' registry); the
  per-SFT table's signed rows correlate with Δ itself, so for an accuracy their sign is the
  opposite of the matrix's.

In both cases the predicted harm is the normalised score: higher predicts more harm.

Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from stsflow.analysis.correlation import predictor_columns, predictor_families

MATRIX_PRIMARY_KEYS = ("predictor", "normalisation", "metric", "target")
SITE_KEYS = ("layer", "sae", "n_top", "seed")
RUN_KEYS = ("method", "seed")
DEFAULT_NORMALISATION = "zscore"


@dataclass(frozen=True)
class Normalisation:
    name: str
    fn: Callable  # (values over domains, reference mask, target index or None) -> values
    about: str


NORMALISATIONS: dict[str, Normalisation] = {}


def register_normalisation(name: str, about: str):
    """Register a way of putting one SFT set's scores on the scale shared across SFT sets; a test
    keeps the schema's enum (report.matrix.primary.normalisation) equal to this registry."""
    def wrap(fn):
        if name in NORMALISATIONS:
            raise ValueError(f"normalisation {name!r} is registered twice")
        NORMALISATIONS[name] = Normalisation(name, fn, about)
        return fn
    return wrap


@register_normalisation("zscore", "(x − mean) / sd over the reference domains, per SFT set")
def _zscore(x: np.ndarray, ref: np.ndarray, target: int | None) -> np.ndarray:
    r = x[ref & np.isfinite(x)]
    if r.size < 2 or np.ptp(r) == 0:
        return np.full(x.shape, math.nan)
    return (x - r.mean()) / r.std(ddof=1)


@register_normalisation("rank", "(rank − 1) / (D − 1) among the reference domains, ties averaged")
def _rank(x: np.ndarray, ref: np.ndarray, target: int | None) -> np.ndarray:
    r = np.sort(x[ref & np.isfinite(x)])
    out = np.full(x.shape, math.nan)
    if r.size < 2:
        return out
    ok = np.isfinite(x)
    # a domain's average rank among the reference domains (itself counted once if outside them)
    below = np.searchsorted(r, x[ok], side="left")
    ties = np.searchsorted(r, x[ok], side="right") - below
    inside = ref[ok]
    rank = np.where(inside, below + (ties + 1) / 2, below + 1 + ties / 2)
    n = np.where(inside, r.size, r.size + 1)
    out[ok] = (rank - 1) / (n - 1)
    return out


@register_normalisation("target", "x / x(the SFT set's target domain); NaN when that is not > 0")
def _target(x: np.ndarray, ref: np.ndarray, target: int | None) -> np.ndarray:
    if target is None or not (np.isfinite(x[target]) and x[target] > 0):
        return np.full(x.shape, math.nan)
    return x / x[target]


@register_normalisation("none", "the raw score")
def _none(x: np.ndarray, ref: np.ndarray, target: int | None) -> np.ndarray:
    return x.copy()


# ---------------------------------------------------------------------------------- order

def shared_order(frames: Sequence[pl.DataFrame], sfts: Sequence[str] | None = None,
                 domains: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The one order of SFT sets and of domains every matrix, table and figure uses: the given
    lists (the config's order), else first appearance in ``frames``. Names not given are
    appended in order of appearance, so nothing in the data is dropped silently."""
    seen_s, seen_d = list(sfts or []), list(domains or [])
    for f in frames:
        if f is None or f.height == 0:
            continue
        seen_s += [s for s in f["sft"].unique(maintain_order=True).to_list() if s not in seen_s]
        seen_d += [d for d in f["domain"].unique(maintain_order=True).to_list()
                   if d not in seen_d]
    return seen_s, seen_d


def order_frame(df: pl.DataFrame, sfts: Sequence[str], domains: Sequence[str],
                by: Sequence[str] = ()) -> pl.DataFrame:
    """``df`` sorted by ``by`` (in that order, nulls last), then SFT set and domain in the
    shared order."""
    s_idx = {s: i for i, s in enumerate(sfts)}
    d_idx = {d: i for i, d in enumerate(domains)}
    cols = []
    if "sft" in df.columns:
        cols.append(pl.col("sft").replace_strict(s_idx, default=len(s_idx),
                                                 return_dtype=pl.Int64).alias("_s"))
    if "domain" in df.columns:
        cols.append(pl.col("domain").replace_strict(d_idx, default=len(d_idx),
                                                    return_dtype=pl.Int64).alias("_d"))
    keys = [*by, *[c.meta.output_name() for c in cols]]
    if not keys:
        return df
    return (df.with_columns(cols).sort(keys, nulls_last=True, maintain_order=True)
            .drop([c.meta.output_name() for c in cols]))


def _concat(frames) -> pl.DataFrame:
    if isinstance(frames, pl.DataFrame):
        return frames
    frames = [f for f in frames if f is not None]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


# ---------------------------------------------------------------------------------- matrices

PREDICTED_COLUMNS = ("model", "predictor", "family", "normalisation", "sft", "domain",
                     "own_target", "layer", "sae", "n_top", "seed", "raw", "score")


def predicted_matrix(sts, site: dict, *, sfts: Sequence[str] | None = None,
                     domains: Sequence[str] | None = None,
                     targets: dict[str, str | None] | None = None,
                     normalisations: Sequence[str] | None = None) -> pl.DataFrame:
    """The predicted matrix: one row per (model, predictor, normalisation, SFT set, domain) at
    ``site`` (layer, sae, n_top, seed; a key the tables lack, or None, is not filtered on).

    ``sts``: the per-SFT STS tables (``tables/<model>/<sft>/sts.parquet``; one frame or a list);
    only predicted rows are read (the ``_oracle`` rows need the tuned model: they are no
    prediction). ``targets``: SFT set → its target domain (``sft.<name>.target``), for the
    ``target`` normalisation and the ``own_target`` flag. Columns: ``raw`` the predictor's score,
    ``score`` the normalised one (higher predicts more harm), ``own_target`` whether the domain is
    the SFT set's own task (its Δ is the gain fine-tuning is for, not a side effect).
    """
    df = _concat(sts)
    for c in ("model", "sft", "domain", "layer", "n_top"):
        if c not in df.columns:
            raise ValueError(f"sts table lacks column {c!r}; it has {df.columns}")
    if "method" in df.columns:
        df = df.filter(pl.col("method").is_null())
    for k in SITE_KEYS:
        if site.get(k) is not None and k in df.columns:
            df = df.filter(pl.col(k) == site[k])
    names = [c for c in predictor_columns(df) if not c.endswith("_oracle")]
    if df.height == 0 or not names:
        raise ValueError(f"no STS row at the site {site}: check report.primary's layer, SAE and "
                         "N against the STS tables")
    key = ["model", "sft", "domain"]
    dup = df.group_by(key).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"the STS tables have {dup.height} cells with several rows at the site "
                         f"{site} (e.g. {dup.drop('len').row(0, named=True)}): give the site's "
                         "layer, SAE, N and seed")
    norms = list(normalisations or NORMALISATIONS)
    unknown = [n for n in norms if n not in NORMALISATIONS]
    if unknown:
        raise ValueError(f"unknown normalisation(s) {unknown}; known: {list(NORMALISATIONS)}")
    sfts, domains = shared_order([df], sfts, domains)
    targets = targets or {}
    fams = predictor_families()
    site_vals = {k: (df[k][0] if k in df.columns else site.get(k)) for k in SITE_KEYS}
    records = []
    for (model,), g in df.partition_by("model", as_dict=True, maintain_order=True).items():
        present = [s for s in sfts if s in set(g["sft"].to_list())]
        have = {s: set(g.filter(pl.col("sft") == s)["domain"].to_list()) for s in present}
        ref_domains = [d for d in domains if all(d in have[s] for s in present)]
        for name in names:
            grid = np.full((len(present), len(domains)), math.nan)
            for r in g.select("sft", "domain", pl.col(name).cast(pl.Float64)).iter_rows():
                grid[present.index(r[0]), domains.index(r[1])] = (
                    math.nan if r[2] is None else r[2])
            ref = np.array([d in ref_domains for d in domains])
            for norm in norms:
                fn = NORMALISATIONS[norm].fn
                for i, s in enumerate(present):
                    t = targets.get(s)
                    t_idx = domains.index(t) if t in domains else None
                    with np.errstate(invalid="ignore", divide="ignore"):
                        vals = fn(grid[i], ref, t_idx)
                    for j, d in enumerate(domains):
                        if d not in have[s]:
                            continue
                        records.append({"model": model, "predictor": name,
                                        "family": fams.get(name, "other"),
                                        "normalisation": norm, "sft": s, "domain": d,
                                        "own_target": t == d, **site_vals,
                                        "raw": float(grid[i, j]), "score": float(vals[j])})
    schema = {"model": pl.String, "predictor": pl.String, "family": pl.String,
              "normalisation": pl.String, "sft": pl.String, "domain": pl.String,
              "own_target": pl.Boolean, "layer": pl.Int64, "sae": pl.String,
              "n_top": pl.Int64, "seed": pl.Int64, "raw": pl.Float64, "score": pl.Float64}
    out = pl.DataFrame(records, schema=schema)
    order = {n: i for i, n in enumerate(names)}
    norm_order = {n: i for i, n in enumerate(norms)}
    out = out.with_columns(
        _p=pl.col("predictor").replace_strict(order, return_dtype=pl.Int64),
        _n=pl.col("normalisation").replace_strict(norm_order, return_dtype=pl.Int64))
    return order_frame(out, sfts, domains, by=["model", "_p", "_n"]).drop("_p", "_n")


OBSERVED_COLUMNS = ("model", "method", "seed", "metric", "sft", "domain", "own_target",
                    "delta", "abs_delta", "delta_se", "ci_low", "ci_high")


def observed_matrix(observed, *, sfts: Sequence[str] | None = None,
                    domains: Sequence[str] | None = None,
                    targets: dict[str, str | None] | None = None) -> pl.DataFrame:
    """The observed matrix: one row per (model, method, seed, metric, SFT set, domain) from the
    per-SFT observed tables (``tables/<model>/<sft>/observed.parquet``) and/or Δ given in the
    config (no method or seed: null). Columns as the observed table's; ``own_target`` as in
    ``predicted_matrix``. Missing noise columns are NaN."""
    df = _concat(observed)
    if df.height == 0:
        return pl.DataFrame(schema={c: (pl.Boolean if c == "own_target" else pl.Float64
                                        if c in ("delta", "abs_delta", "delta_se", "ci_low",
                                                 "ci_high")
                                        else pl.Int64 if c == "seed" else pl.String)
                                    for c in OBSERVED_COLUMNS})
    for c in ("model", "sft", "domain", "metric", "delta"):
        if c not in df.columns:
            raise ValueError(f"observed table lacks column {c!r}; it has {df.columns}")
    targets = targets or {}
    cols = [pl.col("model").cast(pl.String),
            *[(pl.col(k) if k in df.columns else pl.lit(None)).cast(
                pl.Int64 if k == "seed" else pl.String).alias(k) for k in RUN_KEYS],
            pl.col("metric").cast(pl.String), pl.col("sft").cast(pl.String),
            pl.col("domain").cast(pl.String)]
    num = [(pl.col(c).cast(pl.Float64).fill_null(math.nan) if c in df.columns
            else pl.lit(math.nan, dtype=pl.Float64)).alias(c)
           for c in ("delta_se", "ci_low", "ci_high")]
    out = df.select(*cols, pl.col("delta").cast(pl.Float64), *num)
    keys = ["model", *RUN_KEYS, "metric", "sft", "domain"]
    dup = out.group_by(keys).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"observed tables have {dup.height} duplicated cells on {keys}, e.g. "
                         f"{dup.drop('len').row(0, named=True)}")
    own = pl.struct("sft", "domain").map_elements(
        lambda r: targets.get(r["sft"]) == r["domain"], return_dtype=pl.Boolean)
    out = out.with_columns(abs_delta=pl.col("delta").abs(), own_target=own)
    sfts, domains = shared_order([out], sfts, domains)
    return order_frame(out.select(OBSERVED_COLUMNS), sfts, domains,
                       by=["model", *RUN_KEYS, "metric"])


def harm(obs: pl.DataFrame, target: str, directions: dict[str, bool] | None = None) -> pl.DataFrame:
    """``obs`` with a ``harm`` column (see the module text): |Δ| for ``abs``; for ``signed`` −Δ
    where the metric's higher is better, +Δ where lower is better (``directions``: metric →
    higher_is_better). A metric without a known direction cannot say what a worsening is."""
    if target == "abs":
        return obs.with_columns(harm=pl.col("delta").abs())
    if target != "signed":
        raise ValueError(f"target must be abs or signed, got {target!r}")
    directions = directions or {}
    unknown = sorted(set(obs["metric"].to_list()) - set(directions))
    if unknown:
        raise ValueError(f"target signed: no direction for metric(s) {unknown} (which way is "
                         "worse?). Fix: give their higher_is_better, or use target abs")
    sign = pl.col("metric").replace_strict({m: (-1.0 if hib else 1.0)
                                            for m, hib in directions.items()},
                                           return_dtype=pl.Float64)
    return obs.with_columns(harm=sign * pl.col("delta"))


def runs_of(obs: pl.DataFrame) -> list[dict]:
    """The (method, seed, metric) combinations of an observed matrix, in its order."""
    if obs is None or obs.height == 0:
        return []
    return obs.select(*RUN_KEYS, "metric").unique(maintain_order=True).to_dicts()


def select(df: pl.DataFrame, values: dict) -> pl.DataFrame:
    """Rows of ``df`` equal to ``values`` (None matches null) on the columns it has."""
    for k, v in values.items():
        if k in df.columns:
            df = df.filter(pl.col(k).eq_missing(pl.lit(v, dtype=df.schema[k])))
    return df


def resolve_matrix_primary(matrix_primary: dict, report_primary: dict,
                           seeds: Sequence[int]) -> dict:
    """The pre-declared primary analysis of the matrix with its defaults filled:
    predictor, metric and target null → report.primary's (``report_primary`` already resolved by
    ``config.primary.resolve_primary``), normalisation null → ``zscore``; the site (layer,
    sae, n_top) is report.primary's and the ICL seed the lowest of ``seeds`` (sts.seeds)."""
    out = {k: matrix_primary.get(k) for k in MATRIX_PRIMARY_KEYS}
    for k in ("predictor", "metric", "target"):
        if out[k] is None:
            out[k] = report_primary.get(k)
    if out["normalisation"] is None:
        out["normalisation"] = DEFAULT_NORMALISATION
    out.update({k: report_primary.get(k) for k in ("layer", "sae", "n_top")})
    out["seed"] = min(int(s) for s in seeds) if seeds else None
    return out
