"""The decision table: for each domain, the candidate SFT sets ranked by predicted harm and, where
fine-tuning ran, by observed harm; how well the two rankings agree, domain by domain and across
domains; and, for each SFT set, the domains it is predicted to hurt most. What "harm" means (|Δ|
or the signed worsening) follows the declared target; see ``analysis.matrix``.

Choices:

- **Rank agreement per domain: Kendall's τ-b**, not Spearman. With a handful of candidates
  (K = 3 to 10) Spearman's ρ takes few values and has no plain reading, while τ does: (concordant
  − discordant pairs) / pairs, i.e. for a random pair of candidates, how much more often the
  prediction orders them as observed than the other way. τ-b corrects for ties, and its exact
  distribution under random ranking is cheap to enumerate at these K.
- **Chance level**: under a random ranking (the predicted values assigned to the candidates in
  a uniformly random order, independently per domain) E[τ] = 0. ``tau_p`` is the exact one-sided
  P(τ ≥ τ_obs) over all K! orders (K ≤ ``EXACT_MAX_K``; beyond, a Monte-Carlo estimate, which
  ``p_method`` says). Across domains, ``mean_tau_p`` is the exact one-sided P(mean τ ≥ observed)
  by convolving the domains' exact null distributions (independent under the null; Monte Carlo
  when the convolution grows too large).
- **Top-1 agreement**: a domain is a hit when the candidate predicted least harmful is the one
  observed least harmful (ties in the observation: any of the tied). Under random ranking the
  hit probability of a domain is 1/K_d, so the number of hits is Poisson-binomial; ``top1_p`` is
  its exact upper tail P(hits ≥ observed), and the hit rate gets a Clopper-Pearson interval.
  The null is "the prediction ranks at random"; it is not "the prediction is no better than a
  fixed preference for one candidate": where one SFT set harms every domain least, a predictor
  that always names it scores hits without telling domains apart. Under ``zscore`` and ``rank``
  normalisation the prediction carries no such per-SFT level; under ``none`` it may.
- **The SFT set's own target domain** is ranked like every other domain and flagged
  (``own_target``): there its Δ is the gain fine-tuning is for, so under target abs it is
  expected to be the largest change.
- Ranks: 1 = most harm; a tie is broken by the shared SFT order (for display only: τ-b and the
  hits use the values).

Torch-free.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats as sps

from stsflow.analysis.matrix import RUN_KEYS, harm, runs_of, select

EXACT_MAX_K = 8  # 8! = 40,320 orders: exact; more candidates use Monte Carlo
_CONVOLUTION_MAX_SUPPORT = 200_000
_TOL = 1e-9


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ-b of two equal-length arrays (NaN when either is constant or n < 2)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 2:
        return math.nan
    i, j = np.triu_indices(n, 1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = i.size
    tx, ty = np.count_nonzero(sx == 0), np.count_nonzero(sy == 0)
    den = math.sqrt((n0 - tx) * (n0 - ty))
    return float((sx * sy).sum() / den) if den > 0 else math.nan


def tau_null(x: np.ndarray, y: np.ndarray, *, n_mc: int = 20000,
             seed: int = 0) -> tuple[np.ndarray, bool]:
    """τ-b of y with every order of x's values (exact: all K! orders, each once), or with
    ``n_mc`` random orders when K > EXACT_MAX_K; returns (values, exact)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = x.size
    if n <= EXACT_MAX_K:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
        exact = True
    else:
        perms = np.argsort(np.random.default_rng(seed).random((n_mc, n)), axis=1)
        exact = False
    i, j = np.triu_indices(n, 1)
    xp = x[perms]
    sx = np.sign(xp[:, i] - xp[:, j])
    sy = np.sign(y[i] - y[j])
    n0 = i.size
    tx, ty = np.count_nonzero(sx[0] == 0), np.count_nonzero(sy == 0)  # ties keep their count
    den = math.sqrt((n0 - tx) * (n0 - ty))
    vals = (sx * sy).sum(axis=1) / den if den > 0 else np.full(len(perms), math.nan)
    return vals, exact


def _upper_p(null: np.ndarray, obs: float, exact: bool) -> float:
    hits = int(np.count_nonzero(null >= obs - _TOL))
    return hits / null.size if exact else (hits + 1) / (null.size + 1)


def poisson_binomial_upper(probs: Sequence[float], k: int) -> float:
    """P(X ≥ k) for X a sum of independent Bernoulli(p_i) (exact, by convolution)."""
    dist = np.array([1.0])
    for p in probs:
        dist = np.convolve(dist, [1.0 - p, p])
    return float(min(1.0, dist[k:].sum())) if k < dist.size else 0.0


def clopper_pearson(k: int, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a proportion k / n."""
    if n == 0:
        return math.nan, math.nan
    a = (1.0 - ci) / 2
    lo = 0.0 if k == 0 else float(sps.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(sps.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


# ---------------------------------------------------------------------------------- the table

DECISION_COLUMNS = ("method", "seed", "metric", "domain", "sft", "own_target", "predicted",
                    "predicted_rank", "delta", "harm", "observed_rank", "picked", "least")


def _ranks(values: np.ndarray) -> np.ndarray:
    """1 = largest; NaN last; ties broken by position (the shared SFT order)."""
    key = np.where(np.isfinite(values), -values, np.inf)
    order = np.argsort(key, kind="stable")
    out = np.empty(values.size, dtype=np.int64)
    out[order] = np.arange(1, values.size + 1)
    return out


def decision_table(pred: pl.DataFrame, obs: pl.DataFrame | None, primary: dict, *,
                   directions: dict[str, bool] | None = None) -> pl.DataFrame:
    """One row per (run, metric, domain, SFT set): the declared predictor's normalised score
    (``predicted``, higher = more harm predicted) and its rank among the candidates of the domain
    (``predicted_rank``, 1 = most harm), the observed ``delta`` and ``harm`` (per the declared
    target) with their rank (``observed_rank``); ``picked``: the candidate predicted least
    harmful among those with an observation (``least``: observed least harmful; ties: each of
    the tied). A candidate without an observation in a run keeps its predicted rank and has no
    observed columns. Without any observation the run columns are null (prediction only).

    ``pred``: ``analysis.matrix.predicted_matrix``; ``obs``: ``observed_matrix``; ``primary``:
    ``resolve_matrix_primary``. Only the declared metric is used."""
    p = select(pred, {"predictor": primary["predictor"],
                      "normalisation": primary["normalisation"]})
    if p.height == 0:
        raise ValueError(f"the predicted matrix has no predictor {primary['predictor']!r} with "
                         f"normalisation {primary['normalisation']!r}")
    sfts = p["sft"].unique(maintain_order=True).to_list()
    domains = p["domain"].unique(maintain_order=True).to_list()
    o = None
    if obs is not None and obs.height:
        o = harm(obs.filter(pl.col("metric") == primary["metric"]), primary["target"],
                 directions)
    runs = [r for r in runs_of(o)] if o is not None else []
    if not runs:
        runs = [{"method": None, "seed": None, "metric": None}]
    records = []
    for run in runs:
        ro = select(o, run) if run["metric"] is not None else None
        for d in domains:
            pd_ = p.filter(pl.col("domain") == d)
            cand = [s for s in sfts if s in set(pd_["sft"].to_list())]
            score = {r["sft"]: r["score"] for r in pd_.iter_rows(named=True)}
            own = {r["sft"]: r["own_target"] for r in pd_.iter_rows(named=True)}
            x = np.array([score[s] for s in cand], dtype=np.float64)
            od = ({r["sft"]: r for r in ro.filter(pl.col("domain") == d).iter_rows(named=True)}
                  if ro is not None else {})
            y = np.array([od[s]["harm"] if s in od else math.nan for s in cand],
                         dtype=np.float64)
            both = np.isfinite(x) & np.isfinite(y)
            picked = least = set()
            if both.sum() >= 2:
                xb, yb = x[both], y[both]
                names = [s for s, b in zip(cand, both) if b]
                picked = {names[int(np.argmin(xb))]}
                least = {s for s, v in zip(names, yb) if v <= yb.min() + _TOL}
            pr, orank = _ranks(x), _ranks(y)
            for i, s in enumerate(cand):
                records.append({**{k: run[k] for k in (*RUN_KEYS, "metric")}, "domain": d,
                                "sft": s, "own_target": own[s], "predicted": float(x[i]),
                                "predicted_rank": int(pr[i]),
                                "delta": float(od[s]["delta"]) if s in od else None,
                                "harm": float(y[i]) if s in od else None,
                                "observed_rank": int(orank[i]) if np.isfinite(y[i]) else None,
                                "picked": s in picked if both.sum() >= 2 else None,
                                "least": s in least if both.sum() >= 2 else None})
    schema = {"method": pl.String, "seed": pl.Int64, "metric": pl.String, "domain": pl.String,
              "sft": pl.String, "own_target": pl.Boolean, "predicted": pl.Float64,
              "predicted_rank": pl.Int64, "delta": pl.Float64, "harm": pl.Float64,
              "observed_rank": pl.Int64, "picked": pl.Boolean, "least": pl.Boolean}
    out = pl.DataFrame(records, schema=schema)
    return _keep_run_order(out, runs, domains, sfts)


def _keep_run_order(df: pl.DataFrame, runs, domains, sfts) -> pl.DataFrame:
    idx = {(r["method"], r["seed"], r["metric"]): i for i, r in enumerate(runs)}
    d_idx = {d: i for i, d in enumerate(domains)}
    s_idx = {s: i for i, s in enumerate(sfts)}
    key = [(idx[(r["method"], r["seed"], r["metric"])], d_idx[r["domain"]], s_idx[r["sft"]])
           for r in df.select(*RUN_KEYS, "metric", "domain", "sft").iter_rows(named=True)]
    return df[sorted(range(df.height), key=key.__getitem__)] if df.height else df


AGREEMENT_COLUMNS = ("method", "seed", "metric", "domain", "k", "kendall_tau", "tau_chance",
                     "tau_p", "p_method", "picked", "least", "top1_hit", "top1_chance")


def domain_agreement(decision: pl.DataFrame, *, n_mc: int = 20000,
                     seed: int = 0) -> pl.DataFrame:
    """Per (run, metric, domain) with an observation for at least 2 candidates: ``k`` candidates
    compared, Kendall's τ-b of predicted and observed harm, its chance level (0) and exact
    one-sided p under random ranking, the candidate predicted least harmful (``picked``), the
    observed least harmful (``least``; tied ones joined by "/"), ``top1_hit`` and its chance
    1/k."""
    records = []
    if decision.height == 0 or decision["harm"].null_count() == decision.height:
        return pl.DataFrame(schema=_agreement_schema())
    for key, g in decision.filter(pl.col("harm").is_not_null() & pl.col("predicted").is_finite()
                                  & pl.col("harm").is_finite()).partition_by(
            [*RUN_KEYS, "metric", "domain"], as_dict=True, maintain_order=True).items():
        if g.height < 2:
            continue
        kv = dict(zip([*RUN_KEYS, "metric", "domain"], key))
        x, y = g["predicted"].to_numpy(), g["harm"].to_numpy()
        tau = kendall_tau_b(x, y)
        null, exact = tau_null(x, y, n_mc=n_mc, seed=seed)
        p = _upper_p(null, tau, exact) if math.isfinite(tau) else math.nan
        names = g["sft"].to_list()
        picked = names[int(np.argmin(x))]
        least = [s for s, v in zip(names, y) if v <= y.min() + _TOL]
        records.append({**kv, "k": g.height, "kendall_tau": tau, "tau_chance": 0.0,
                        "tau_p": p,
                        "p_method": ("exact over all orders" if exact
                                     else f"Monte Carlo, {n_mc} random orders"),
                        "picked": picked, "least": "/".join(least),
                        # a random pick hits any of the tied least-harmed sets
                        "top1_hit": picked in least, "top1_chance": len(least) / g.height})
    return pl.DataFrame(records, schema=_agreement_schema())


def _agreement_schema() -> dict:
    return {"method": pl.String, "seed": pl.Int64, "metric": pl.String, "domain": pl.String,
            "k": pl.Int64, "kendall_tau": pl.Float64, "tau_chance": pl.Float64,
            "tau_p": pl.Float64, "p_method": pl.String, "picked": pl.String,
            "least": pl.String, "top1_hit": pl.Boolean, "top1_chance": pl.Float64}


def _mean_tau_p(nulls: list[np.ndarray], observed_mean: float, *, n_mc: int,
                seed: int) -> tuple[float, str]:
    """One-sided P(mean τ ≥ observed) with the domains' τ independent under random ranking:
    exact by convolving their null distributions, Monte Carlo if that grows too large."""
    dist = {0.0: 1.0}
    for null in nulls:
        vals, counts = np.unique(np.round(null, 9), return_counts=True)
        probs = counts / counts.sum()
        nxt: dict[float, float] = {}
        for s, ps in dist.items():
            for v, pv in zip(vals, probs):
                key = round(s + float(v), 9)
                nxt[key] = nxt.get(key, 0.0) + ps * pv
        dist = nxt
        if len(dist) > _CONVOLUTION_MAX_SUPPORT:
            break
    else:
        total = observed_mean * len(nulls)
        return float(min(1.0, sum(p for s, p in dist.items() if s >= total - 1e-7))), "exact"
    rng = np.random.default_rng(seed)
    sims = sum(rng.choice(n, size=n_mc) for n in nulls) / len(nulls)
    hits = int(np.count_nonzero(sims >= observed_mean - _TOL))
    return (hits + 1) / (n_mc + 1), f"Monte Carlo, {n_mc} draws"


SUMMARY_COLUMNS = ("method", "seed", "metric", "n_domains", "mean_tau", "mean_tau_p",
                   "mean_tau_p_method", "top1_hits", "top1_rate", "top1_ci_low",
                   "top1_ci_high", "top1_chance", "top1_p")


def agreement_summary(decision: pl.DataFrame, agreement: pl.DataFrame, *, ci: float = 0.95,
                      n_mc: int = 20000, seed: int = 0) -> pl.DataFrame:
    """Per (run, metric), across domains: the mean τ-b and its exact p under random ranking, the
    number and rate of top-1 hits with a Clopper-Pearson interval, the chance rate (mean 1/K_d)
    and the exact Poisson-binomial p of at least that many hits."""
    records = []
    for key, g in agreement.partition_by([*RUN_KEYS, "metric"], as_dict=True,
                                         maintain_order=True).items():
        kv = dict(zip([*RUN_KEYS, "metric"], key))
        g = g.filter(pl.col("kendall_tau").is_finite() | pl.col("top1_hit").is_not_null())
        taus = g["kendall_tau"].to_numpy()
        ok = np.isfinite(taus)
        nulls = []
        d = select(decision, kv)
        for dom in g.filter(pl.col("kendall_tau").is_finite())["domain"].to_list():
            rows = d.filter((pl.col("domain") == dom) & pl.col("harm").is_finite()
                            & pl.col("predicted").is_finite())
            nulls.append(tau_null(rows["predicted"].to_numpy(), rows["harm"].to_numpy(),
                                  n_mc=n_mc, seed=seed)[0])
        mean_tau = float(taus[ok].mean()) if ok.any() else math.nan
        p, how = (_mean_tau_p(nulls, mean_tau, n_mc=n_mc, seed=seed) if ok.any()
                  else (math.nan, None))
        hits = int(g["top1_hit"].sum())
        n = g.height
        lo, hi = clopper_pearson(hits, n, ci)
        records.append({**kv, "n_domains": n, "mean_tau": mean_tau, "mean_tau_p": p,
                        "mean_tau_p_method": how, "top1_hits": hits,
                        "top1_rate": hits / n if n else math.nan, "top1_ci_low": lo,
                        "top1_ci_high": hi,
                        "top1_chance": float(g["top1_chance"].mean()) if n else math.nan,
                        "top1_p": poisson_binomial_upper(g["top1_chance"].to_list(), hits)})
    schema = {"method": pl.String, "seed": pl.Int64, "metric": pl.String,
              "n_domains": pl.Int64, "mean_tau": pl.Float64, "mean_tau_p": pl.Float64,
              "mean_tau_p_method": pl.String, "top1_hits": pl.Int64, "top1_rate": pl.Float64,
              "top1_ci_low": pl.Float64, "top1_ci_high": pl.Float64,
              "top1_chance": pl.Float64, "top1_p": pl.Float64}
    return pl.DataFrame(records, schema=schema)


def most_at_risk(pred: pl.DataFrame, primary: dict, top_k: int = 3) -> pl.DataFrame:
    """For each SFT set, the ``top_k`` domains the declared predictor says it will hurt most
    (rank 1 = most), with the raw and normalised score. Every normalisation is increasing
    within one SFT set, so this order is the same under each; the SFT set's own target domain is
    listed like the others and flagged."""
    p = select(pred, {"predictor": primary["predictor"],
                      "normalisation": primary["normalisation"]})
    sfts = p["sft"].unique(maintain_order=True).to_list()
    out = []
    for s in sfts:
        g = p.filter(pl.col("sft") == s)
        raw = g["raw"].to_numpy()
        r = _ranks(raw)
        for row, rank in zip(g.iter_rows(named=True), r):
            if rank <= top_k and math.isfinite(row["raw"]):
                out.append({"sft": s, "rank": int(rank), "domain": row["domain"],
                            "own_target": row["own_target"], "raw": row["raw"],
                            "score": row["score"]})
    out.sort(key=lambda r: (sfts.index(r["sft"]), r["rank"]))
    return pl.DataFrame(out, schema={"sft": pl.String, "rank": pl.Int64, "domain": pl.String,
                                     "own_target": pl.Boolean, "raw": pl.Float64,
                                     "score": pl.Float64})


def normalisation_comparison(pred: pl.DataFrame, obs: pl.DataFrame | None, primary: dict, *,
                             directions: dict[str, bool] | None = None, ci: float = 0.95,
                             n_mc: int = 20000, seed: int = 0) -> tuple[pl.DataFrame,
                                                                         pl.DataFrame]:
    """How the decision changes with the normalisation: (rankings, summary).

    ``rankings``: one row per (normalisation, domain): the candidates from most to least
    predicted harm (``ranking``, names joined by " > "), the one predicted least harmful, and
    Kendall's τ-b between this normalisation's scores and the declared one's (1: same order).
    ``summary``: per (normalisation, run, metric), the agreement with the observation as in
    ``agreement_summary``, plus ``n_changed``, the domains whose ranking differs from the
    declared normalisation's."""
    norms = pred["normalisation"].unique(maintain_order=True).to_list()
    base = select(pred, {"predictor": primary["predictor"],
                         "normalisation": primary["normalisation"]})
    rows, summaries = [], []
    changed: dict[str, int] = {}
    for norm in norms:
        p = select(pred, {"predictor": primary["predictor"], "normalisation": norm})
        n_changed = 0
        for d in p["domain"].unique(maintain_order=True).to_list():
            g = p.filter(pl.col("domain") == d)
            b = base.filter(pl.col("domain") == d)
            x = g["score"].to_numpy()
            names = g["sft"].to_list()
            bx = b["score"].to_numpy()
            order = [names[i] for i in np.argsort(_ranks(x)) if np.isfinite(x[i])]
            bnames = b["sft"].to_list()
            border = [bnames[i] for i in np.argsort(_ranks(bx)) if np.isfinite(bx[i])]
            ok = np.isfinite(x) & np.isfinite(bx)
            n_changed += order != border
            rows.append({"normalisation": norm, "domain": d,
                         "ranking": " > ".join(order) or None,
                         "least": order[-1] if order else None,
                         "tau_vs_declared": (kendall_tau_b(x[ok], bx[ok])
                                             if ok.sum() >= 2 else math.nan)})
        changed[norm] = n_changed
        if obs is not None and obs.height:
            dec = decision_table(pred, obs, {**primary, "normalisation": norm},
                                 directions=directions)
            agr = domain_agreement(dec, n_mc=n_mc, seed=seed)
            summaries.append(agreement_summary(dec, agr, ci=ci, n_mc=n_mc, seed=seed)
                             .with_columns(normalisation=pl.lit(norm),
                                           n_changed=pl.lit(n_changed, dtype=pl.Int64)))
    rankings = pl.DataFrame(rows, schema={"normalisation": pl.String, "domain": pl.String,
                                          "ranking": pl.String, "least": pl.String,
                                          "tau_vs_declared": pl.Float64})
    summary = (pl.concat(summaries) if summaries else
               pl.DataFrame(schema={"normalisation": pl.String, "n_changed": pl.Int64}))
    if summaries:
        summary = summary.select("normalisation", "n_changed",
                                 *[c for c in summary.columns
                                   if c not in ("normalisation", "n_changed")])
    else:
        summary = pl.DataFrame({"normalisation": list(changed),
                                "n_changed": list(changed.values())},
                               schema={"normalisation": pl.String, "n_changed": pl.Int64})
    return rankings, summary
