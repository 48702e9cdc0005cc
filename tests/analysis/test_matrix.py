"""The cross-SFT matrix: predicted and observed matrices, normalisations, the decision table and
its agreement statistics against direct computations (numpy/scipy, float64, enumeration), the
pooled validity's structured interval and permutation test, including a simulation of their
rejection rate under a null with shared domain and SFT effects, and the job writing every table
and the report page."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from stsflow.analysis import decision as dec
from stsflow.analysis import matrix as mx
from stsflow.analysis import pooled as po

SFTS = ["math", "algebra", "geo", "code"]
DOMAINS = ["law", "physics", "history", "biology", "business", "chemistry"]
TARGETS = {"math": "business", "algebra": "physics", "geo": "history"}  # code: none


def _tables(seed=0, *, observed_for=("math", "algebra", "geo")):
    """Per-SFT STS tables (two ICL seeds, two N, an oracle row to be ignored) and observed tables
    (two metrics) with random values; returns (sts frames, observed frames, truth) where truth
    holds the site's raw scores and the Δ as dicts."""
    rng = np.random.default_rng(seed)
    sts, obs, raw, delta = [], [], {}, {}
    for s in SFTS:
        rows = []
        for d in DOMAINS:
            for n_top in (50, 100):
                for icl_seed in (0, 1):
                    v = {"sts_icl": float(rng.random() + 0.1), "sts_act": float(rng.random()),
                         "repsim": float(rng.normal())}
                    if (n_top, icl_seed) == (100, 0):
                        raw[(s, d)] = v
                    rows.append({"model": "m", "layer": 12, "sae": "main", "sft": s,
                                 "domain": d, "n_top": n_top, "seed": icl_seed, **v})
        rows.append({"model": "m", "layer": 12, "sae": "main", "sft": s, "domain": DOMAINS[0],
                     "n_top": 100, "seed": 0, "method": "lora", "sts_icl_oracle": 9.0})
        sts.append(pl.DataFrame(rows[::-1]))  # any row order
        if s in observed_for:
            o = []
            for d in DOMAINS:
                for metric in ("nll", "acc"):
                    delta[(s, d, metric)] = float(rng.normal())
                    o.append({"model": "m", "sft": s, "method": "lora", "seed": 0, "domain": d,
                              "metric": metric, "delta": delta[(s, d, metric)],
                              "delta_se": 0.05})
            obs.append(pl.DataFrame(o))
    return sts, obs, {"raw": raw, "delta": delta}


PRIMARY = mx.resolve_matrix_primary(
    {}, {"predictor": "sts_icl", "metric": "nll", "target": "abs", "layer": 12, "sae": "main",
         "n_top": 100}, [1, 0])
DIRECTIONS = {"nll": False, "acc": True}


@pytest.fixture(scope="module")
def data():
    sts, obs, truth = _tables()
    pred = mx.predicted_matrix(sts, PRIMARY, sfts=SFTS, domains=DOMAINS, targets=TARGETS)
    o = mx.observed_matrix(obs, sfts=SFTS, domains=DOMAINS, targets=TARGETS)
    return pred, o, truth


def test_primary_defaults():
    assert PRIMARY == {"predictor": "sts_icl", "normalisation": "zscore", "metric": "nll",
                       "target": "abs", "layer": 12, "sae": "main", "n_top": 100, "seed": 0}
    given = mx.resolve_matrix_primary({"predictor": "repsim", "normalisation": "rank",
                                       "metric": "acc", "target": "signed"}, PRIMARY, [3])
    assert (given["predictor"], given["normalisation"], given["metric"], given["target"],
            given["seed"]) == ("repsim", "rank", "acc", "signed", 3)


def test_predicted_matrix_is_the_site_normalised_in_the_shared_order(data):
    pred, _, truth = data
    assert pred.columns == list(mx.PREDICTED_COLUMNS)
    assert set(pred["predictor"]) == {"sts_icl", "sts_act", "repsim"}  # no oracle column
    assert pred["normalisation"].unique(maintain_order=True).to_list() == list(mx.NORMALISATIONS)
    one = pred.filter(pl.col("predictor") == "sts_icl", pl.col("normalisation") == "zscore")
    assert one["sft"].to_list() == [s for s in SFTS for _ in DOMAINS]
    assert one["domain"].to_list() == DOMAINS * len(SFTS)
    assert set(one["seed"]) == {0} and set(one["n_top"]) == {100}
    for name in ("sts_icl", "repsim"):
        for s in SFTS:
            x = np.array([truth["raw"][(s, d)][name] for d in DOMAINS])
            got = {n: pred.filter(pl.col("predictor") == name, pl.col("normalisation") == n,
                                  pl.col("sft") == s)["score"].to_numpy()
                   for n in mx.NORMALISATIONS}
            np.testing.assert_allclose(got["none"], x)
            np.testing.assert_allclose(got["zscore"], (x - x.mean()) / x.std(ddof=1))
            np.testing.assert_allclose(got["rank"], (sps.rankdata(x) - 1) / (len(x) - 1))
            t = TARGETS.get(s)
            if t is None or x[DOMAINS.index(t)] <= 0:
                assert np.isnan(got["target"]).all()
            else:
                np.testing.assert_allclose(got["target"], x / x[DOMAINS.index(t)])
    own = pred.filter(pl.col("own_target")).select("sft", "domain").unique().rows()
    assert sorted(own) == sorted(TARGETS.items())


def test_normalisation_reference_is_the_domains_every_sft_set_has():
    sts, _, truth = _tables()
    sts[1] = sts[1].filter(pl.col("domain") != "law")  # algebra lacks law
    pred = mx.predicted_matrix(sts, PRIMARY, sfts=SFTS, domains=DOMAINS)
    z = pred.filter(pl.col("predictor") == "sts_icl", pl.col("normalisation") == "zscore",
                    pl.col("sft") == "math")
    x = np.array([truth["raw"][("math", d)]["sts_icl"] for d in DOMAINS])
    ref = x[1:]  # law is not a reference domain; math's law cell is normalised with it
    np.testing.assert_allclose(z["score"].to_numpy(), (x - ref.mean()) / ref.std(ddof=1))
    assert pred.filter(pl.col("sft") == "algebra", pl.col("domain") == "law").height == 0


def test_bad_inputs_are_refused():
    sts, obs, _ = _tables()
    with pytest.raises(ValueError, match="no STS row at the site"):
        mx.predicted_matrix(sts, {**PRIMARY, "layer": 20})
    with pytest.raises(ValueError, match="several rows at the site"):
        mx.predicted_matrix(sts, {**PRIMARY, "seed": None})
    with pytest.raises(ValueError, match="duplicated cells"):
        mx.observed_matrix([obs[0], obs[0]])
    o = mx.observed_matrix(obs)
    with pytest.raises(ValueError, match=r"no direction for metric\(s\) \['acc'\]"):
        mx.harm(o, "signed", {"nll": False})


def test_observed_matrix_and_harm(data):
    _, o, truth = data
    assert o.columns == list(mx.OBSERVED_COLUMNS)
    nll = o.filter(pl.col("metric") == "nll")
    assert nll["sft"].unique(maintain_order=True).to_list() == ["math", "algebra", "geo"]
    h = mx.harm(o, "signed", DIRECTIONS)
    for r in h.iter_rows(named=True):
        d = truth["delta"][(r["sft"], r["domain"], r["metric"])]
        assert r["harm"] == (-d if r["metric"] == "acc" else d)
        assert mx.harm(o, "abs").filter(pl.col("sft") == r["sft"], pl.col("domain") == r[
            "domain"], pl.col("metric") == r["metric"])["harm"][0] == abs(d)


def _direct_tau_p(x, y):
    """Exact one-sided p of Kendall's τ-b under random ranking, by scipy over every order."""
    obs = sps.kendalltau(x, y).statistic
    vals = [sps.kendalltau(np.array(p), y).statistic for p in itertools.permutations(x)]
    return obs, float(np.mean(np.array(vals) >= obs - 1e-12))


def test_decision_table_and_agreement_against_a_direct_computation(data):
    pred, o, truth = data
    table = dec.decision_table(pred, o, PRIMARY, directions=DIRECTIONS)
    assert table.columns == list(dec.DECISION_COLUMNS)
    assert set(table["metric"]) == {"nll"}
    agr = dec.domain_agreement(table)
    summ = dec.agreement_summary(table, agr)
    observed = ["math", "algebra", "geo"]
    hits, nulls, taus = 0, [], []
    for d in DOMAINS:
        x = np.array([truth["raw"][(s, d)]["sts_icl"] for s in SFTS])
        xs = {s: (x_ - np.mean(xx)) / np.std(xx, ddof=1) for s, x_, xx in zip(
            SFTS, x, [[truth["raw"][(s, dd)]["sts_icl"] for dd in DOMAINS] for s in SFTS])}
        rows = table.filter(pl.col("domain") == d)
        assert rows["sft"].to_list() == SFTS
        np.testing.assert_allclose(rows["predicted"].to_numpy(), [xs[s] for s in SFTS])
        order = sorted(SFTS, key=lambda s: -xs[s])
        assert rows.sort("predicted_rank")["sft"].to_list() == order
        assert rows.filter(pl.col("sft") == "code")["harm"][0] is None
        px = np.array([xs[s] for s in observed])
        y = np.array([abs(truth["delta"][(s, d, "nll")]) for s in observed])
        tau, p = _direct_tau_p(px, y)
        r = agr.filter(pl.col("domain") == d).row(0, named=True)
        assert r["k"] == 3 and r["tau_chance"] == 0.0
        assert r["kendall_tau"] == pytest.approx(tau, abs=1e-12)
        assert r["tau_p"] == pytest.approx(p, abs=1e-12) and r["p_method"].startswith("exact")
        picked, least = observed[int(np.argmin(px))], observed[int(np.argmin(y))]
        assert (r["picked"], r["least"], r["top1_hit"]) == (picked, least, picked == least)
        assert rows.filter(pl.col("picked"))["sft"].to_list() == [picked]
        hits += picked == least
        taus.append(tau)
        nulls.append([sps.kendalltau(np.array(q), y).statistic
                      for q in itertools.permutations(px)])
    s = summ.row(0, named=True)
    assert s["top1_hits"] == hits and s["n_domains"] == len(DOMAINS)
    assert s["top1_chance"] == pytest.approx(1 / 3)
    assert s["top1_p"] == pytest.approx(sps.binom.sf(hits - 1, len(DOMAINS), 1 / 3))
    lo, hi = sps.binomtest(hits, len(DOMAINS)).proportion_ci(method="exact")
    assert (s["top1_ci_low"], s["top1_ci_high"]) == pytest.approx((lo, hi))
    assert s["mean_tau"] == pytest.approx(np.mean(taus))
    # exact: every combination of the domains' orders (6^6) is equally likely under the null
    sums = np.zeros(1)
    for n in nulls:
        sums = (sums[:, None] + np.array(n)[None, :]).ravel()
    assert s["mean_tau_p"] == pytest.approx(np.mean(sums >= np.sum(taus) - 1e-9))
    assert s["mean_tau_p_method"] == "exact"
    # two candidates tied for least harm in one domain: a random pick hits either, chance 2/3
    d0 = DOMAINS[0]
    tied = table.with_columns(harm=pl.when((pl.col("domain") == d0) & pl.col("harm").is_not_null())
                              .then(pl.lit(0.5)).otherwise(pl.col("harm")))
    tied = tied.with_columns(harm=pl.when((pl.col("domain") == d0) & (pl.col("sft") == "math"))
                             .then(pl.lit(0.9)).otherwise(pl.col("harm")))
    r = dec.domain_agreement(tied).filter(pl.col("domain") == d0).row(0, named=True)
    assert r["least"] == "algebra/geo" and r["top1_chance"] == pytest.approx(2 / 3)
    assert r["top1_hit"] == (r["picked"] in ("algebra", "geo"))


def test_prediction_only_and_at_risk(data):
    pred, _, truth = data
    table = dec.decision_table(pred, None, PRIMARY)
    assert table["method"].null_count() == table.height and table["harm"].null_count() == \
        table.height
    assert dec.domain_agreement(table).height == 0
    risk = dec.most_at_risk(pred, PRIMARY, top_k=2)
    for s in SFTS:
        want = sorted(DOMAINS, key=lambda d: -truth["raw"][(s, d)]["sts_icl"])[:2]
        assert risk.filter(pl.col("sft") == s)["domain"].to_list() == want
    assert risk["sft"].unique(maintain_order=True).to_list() == SFTS


def test_normalisation_comparison(data):
    pred, o, truth = data
    rankings, summary = dec.normalisation_comparison(pred, o, PRIMARY, directions=DIRECTIONS)
    assert rankings.filter(pl.col("normalisation") == "zscore")["tau_vs_declared"].to_list() \
        == [1.0] * len(DOMAINS)
    for d in DOMAINS:
        raw = {s: truth["raw"][(s, d)]["sts_icl"] for s in SFTS}
        row = rankings.filter(pl.col("normalisation") == "none", pl.col("domain") == d)
        assert row["ranking"][0] == " > ".join(sorted(SFTS, key=lambda s: -raw[s]))
        # target: code has no target domain, so it drops out of the ranking
        assert "code" not in rankings.filter(pl.col("normalisation") == "target",
                                             pl.col("domain") == d)["ranking"][0]
    z = summary.filter(pl.col("normalisation") == "zscore").row(0, named=True)
    assert z["n_changed"] == 0
    none = summary.filter(pl.col("normalisation") == "none").row(0, named=True)
    changed = sum(
        rankings.filter(pl.col("normalisation") == "none", pl.col("domain") == d)["ranking"][0]
        != rankings.filter(pl.col("normalisation") == "zscore",
                           pl.col("domain") == d)["ranking"][0] for d in DOMAINS)
    assert none["n_changed"] == changed


# ------------------------------------------------------------------------------ pooled validity

def test_masked_pearson_and_the_pigeonhole_resample():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    y[0, 1] = np.nan
    ok = np.isfinite(y)
    r = po.masked_pearson(x.reshape(1, -1), y.reshape(1, -1))[0]
    assert r == pytest.approx(sps.pearsonr(x[ok], y[ok]).statistic, abs=1e-12)
    ri, ci = np.array([[2, 2, 0]]), np.array([[4, 0, 0, 1, 3]])
    got = po.pigeonhole_pearson(x, y, ri, ci)[0]
    xb, yb = x[[2, 2, 0]][:, [4, 0, 0, 1, 3]], y[[2, 2, 0]][:, [4, 0, 0, 1, 3]]
    keep = np.isfinite(yb)
    assert got == pytest.approx(sps.pearsonr(xb[keep], yb[keep]).statistic, abs=1e-12)
    assert math.isnan(po.masked_pearson(np.ones((1, 4)), np.arange(4.0)[None])[0])


def test_row_column_permutation_p_is_exact_on_a_small_matrix():
    """With every (row order, column order) pair enumerated the permutation p is known exactly;
    the Monte-Carlo p converges to it."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4))
    y = rng.normal(size=(3, 4)) + 0.8 * x
    r0 = abs(sps.pearsonr(x.ravel(), y.ravel()).statistic)
    vals = [abs(sps.pearsonr(x.ravel(), y[list(a)][:, list(b)].ravel()).statistic)
            for a in itertools.permutations(range(3)) for b in itertools.permutations(range(4))]
    exact = np.mean(np.array(vals) >= r0 - 1e-12)
    p = po.row_column_permutation_p(x, y, 20000, np.random.default_rng(0))
    assert p == pytest.approx(exact, abs=3 * math.sqrt(exact * (1 - exact) / 20000) + 1e-4)


def test_structured_inference_holds_its_level_where_the_naive_one_does_not():
    """A null with shared domain and SFT effects (x and y independent arrays): the pigeonhole
    interval and the row-and-column permutation reject ρ = 0 no more than the nominal 5 % within
    Monte-Carlo error, while treating cells as independent pairs visibly over-rejects."""
    rates = po.null_rejection(3, 10, sd_domain=2.0, sd_sft=1.0, reps=300, n_boot=300,
                              n_perm=300, seed=11)
    bound = 0.05 + 3 * rates["mc_se_at_nominal"]
    assert rates["pigeonhole_interval"] <= bound, rates
    assert rates["row_column_permutation"] <= bound, rates
    assert rates["naive_cell_bootstrap"] > bound and rates["naive_cell_permutation"] > bound, \
        rates


def test_pooled_table_rows_roles_and_holm(data):
    pred, o, truth = data
    t = po.pooled_table(pred, o, PRIMARY, directions=DIRECTIONS, n_boot=300, n_perm=500)
    assert t.columns == list(po.POOLED_COLUMNS)
    prim = t.filter(pl.col("role") == "primary")
    assert prim.height == 1
    r = prim.row(0, named=True)
    assert (r["scope"], r["predictor"], r["normalisation"], r["metric"], r["target"]) == (
        "all", "sts_icl", "zscore", "nll", "abs")
    assert r["holm_p"] == r["perm_p"] and (r["n_sft"], r["n_domains"], r["n_cells"]) == (
        3, 6, 18)
    x = pred.filter(pl.col("predictor") == "sts_icl", pl.col("normalisation") == "zscore",
                    pl.col("sft") != "code")["score"].to_numpy()
    y = np.array([abs(truth["delta"][(s, d, "nll")]) for s in SFTS[:3] for d in DOMAINS])
    assert r["pearson"] == pytest.approx(sps.pearsonr(x, y).statistic, abs=1e-12)
    assert r["ci_low"] < r["pearson"] < r["ci_high"]
    # per-SFT rows only for the observed SFT sets, at the declared normalisation
    per = t.filter(pl.col("scope") != "all")
    assert set(per["scope"]) == {"math", "algebra", "geo"}
    assert set(per["normalisation"]) == {"zscore"}
    m = per.filter(pl.col("scope") == "math", pl.col("predictor") == "sts_icl",
                   pl.col("target") == "abs", pl.col("metric") == "nll").row(0, named=True)
    assert m["pearson"] == pytest.approx(sps.pearsonr(x[:6], y[:6]).statistic, abs=1e-12)
    # Holm within (scope, target, run, predictor family)
    fam = t.filter(pl.col("role") == "exploratory", pl.col("scope") == "all",
                   pl.col("target") == "abs", pl.col("metric") == "acc",
                   pl.col("family") == "sts")
    p = np.sort(fam["perm_p"].to_numpy())
    want = np.maximum.accumulate(np.minimum(1, (len(p) - np.arange(len(p))) * p))
    np.testing.assert_allclose(np.sort(fam["holm_p"].to_numpy()), want)
    # the panel's Δρ: primary minus the row's sign-oriented ρ, same cells
    rep = t.filter(pl.col("scope") == "all", pl.col("predictor") == "repsim",
                   pl.col("normalisation") == "zscore", pl.col("target") == "abs",
                   pl.col("metric") == "nll").row(0, named=True)
    assert rep["diff"] == pytest.approx(r["pearson"] - math.copysign(1, rep["pearson"])
                                        * rep["pearson"])
    # signed rows: harm oriented by the metric's direction
    s_acc = t.filter(pl.col("scope") == "all", pl.col("predictor") == "sts_icl",
                     pl.col("normalisation") == "none", pl.col("target") == "signed",
                     pl.col("metric") == "acc").row(0, named=True)
    xr = pred.filter(pl.col("predictor") == "sts_icl", pl.col("normalisation") == "none",
                     pl.col("sft") != "code")["raw"].to_numpy()
    ya = np.array([-truth["delta"][(s, d, "acc")] for s in SFTS[:3] for d in DOMAINS])
    assert s_acc["pearson"] == pytest.approx(sps.pearsonr(xr, ya).statistic, abs=1e-12)


def test_matrix_job_writes_every_table_and_the_page(tmp_path):
    from stsflow.jobs.matrix import TABLES, matrix

    sts, obs, _ = _tables(observed_for=("math", "geo"))
    paths = {}
    for kind, frames, names in (("sts", sts, SFTS), ("observed", obs, ["math", "geo"])):
        for f, s in zip(frames, names):
            p = tmp_path / "in" / s / f"{kind}.parquet"
            p.parent.mkdir(parents=True, exist_ok=True)
            f.write_parquet(p)
            paths.setdefault(kind, {})[s] = str(p)
    tables = {t: str(tmp_path / "tables" / "m" / "matrix" / f"{t}.parquet") for t in TABLES}
    report = tmp_path / "reports" / "m" / "matrix"
    matrix("m", paths["sts"], paths["observed"], tables, report, primary=PRIMARY, sfts=SFTS,
           domains=DOMAINS, targets=TARGETS, n_boot=200, n_perm=200)
    for t in TABLES:
        assert pl.read_parquet(tables[t]).height > 0, t
    assert pl.read_parquet(tables["pooled"]).filter(pl.col("role") == "primary").height == 1
    md = (report / "summary.md").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads == ["## Decision table", "## Heatmaps: predicted and observed",
                     "## How the ranking changes with the normalisation",
                     "## Pooled validity across SFT sets"]
    assert (report / "matrix_heatmaps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in (report / "summary.html").read_text()
    with pytest.raises(ValueError, match="no output path"):
        matrix("m", paths["sts"], paths["observed"], {}, report, primary=PRIMARY, sfts=SFTS,
               domains=DOMAINS, targets=TARGETS)
