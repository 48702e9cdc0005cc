"""The predictor panel on the primary analysis against direct numpy/scipy computations."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from stsflow.analysis import comparison, correlation

DOMAINS = [f"d{i}" for i in range(10)]
PRIMARY = {"predictor": "sts_icl", "n_top": 5, "layer": 3, "metric": "acc", "protocol": "all",
           "target": "abs"}


def _tables(seed: int = 0):
    rng = np.random.default_rng(seed)
    delta = rng.normal(0, 1, len(DOMAINS))
    y = np.abs(delta)
    sts_rows, oracle_rows = [], []
    draws = rng.normal(0, 1, (len(DOMAINS), 6))
    for i, d in enumerate(DOMAINS):
        sts_rows.append({"model": "m", "sft": "s", "layer": 3, "n_top": 5, "domain": d,
                         "seed": 0, "sts_icl": y[i] + rng.normal(0, 0.3),
                         "sts_act": rng.normal(), "repsim": -y[i] + rng.normal(0, 0.8),
                         "probe_resid": rng.normal(),
                         "rand_icl": draws[i].tolist(), "rand_act": draws[i][::-1].tolist()})
        oracle_rows.append({"model": "m", "sft": "s", "layer": 3, "n_top": 5, "domain": d,
                            "method": "lora", "seed": 0,
                            "sts_icl_oracle": y[i] + rng.normal(0, 0.1)})
    sts = pl.DataFrame(sts_rows)
    oracle = pl.DataFrame(oracle_rows)
    observed = pl.DataFrame({"model": "m", "sft": "s", "method": "lora", "seed": 0,
                             "domain": DOMAINS, "metric": "acc", "delta": delta})
    return sts, oracle, observed, y


def _panel():
    sts, oracle, observed, y = _tables()
    kw = dict(n_boot=300, n_perm=300, seed=0)
    corr = pl.concat([correlation.correlation_table(sts, observed, **kw),
                      correlation.correlation_table(oracle, observed, **kw)],
                     how="diagonal_relaxed")
    corr = correlation.assign_roles(corr, PRIMARY)
    cmp = comparison.comparison_table(corr, pl.concat([sts, oracle], how="diagonal_relaxed"),
                                      observed, PRIMARY, n_boot=400, seed=1)
    return sts, y, corr, cmp


def test_panel_rows_are_the_correlation_rows_with_labels():
    sts, y, corr, cmp = _panel()
    by = {r["predictor"]: r for r in cmp.to_dicts()}
    assert set(by) == {"sts_icl", "sts_act", "repsim", "probe_resid", "sts_icl_oracle",
                       "sts_icl_randdims", "sts_act_randdims"}
    for name in ("sts_icl", "sts_act", "repsim", "probe_resid"):
        assert by[name]["pearson"] == pytest.approx(sps.pearsonr(sts[name].to_numpy(), y)[0])
    assert by["sts_icl_oracle"]["post_training"] and not by["repsim"]["post_training"]
    # repsim is built anti-correlated with |Δ|: the largest |ρ| among the baselines
    assert by["repsim"]["best_baseline"] and by["repsim"]["pearson"] < 0
    assert sum(r["best_baseline"] for r in by.values()) == 1
    assert math.isnan(by["sts_icl"]["diff"] or math.nan)  # no difference with itself


def test_paired_difference_against_a_direct_bootstrap():
    sts, y, corr, cmp = _panel()
    row = cmp.filter(pl.col("predictor") == "repsim").row(0, named=True)
    a, b = sts["sts_icl"].to_numpy(), sts["repsim"].to_numpy()
    r_a, r_b = np.corrcoef(a, y)[0, 1], np.corrcoef(b, y)[0, 1]
    assert row["diff"] == pytest.approx(r_a - (-1) * r_b)  # oriented by repsim's negative sign
    idx = np.random.default_rng(1).integers(0, len(y), size=(400, len(y)))
    direct = [np.corrcoef(a[i], y[i])[0, 1] + np.corrcoef(b[i], y[i])[0, 1] for i in idx]
    assert row["diff_low"] == pytest.approx(np.quantile(direct, 0.025))
    assert row["diff_high"] == pytest.approx(np.quantile(direct, 0.975))


def test_random_draw_row_against_direct_correlations():
    sts, y, corr, cmp = _panel()
    row = cmp.filter(pl.col("predictor") == "sts_icl_randdims").row(0, named=True)
    draws = np.array(sts["rand_icl"].to_list())
    rs = np.array([sps.pearsonr(draws[:, j], y)[0] for j in range(draws.shape[1])])
    assert row["pearson"] == pytest.approx(rs.mean())
    assert row["pearson_ci_low"] == pytest.approx(np.quantile(rs, 0.025))
    r_prim = sps.pearsonr(sts["sts_icl"].to_numpy(), y)[0]
    assert row["share_at_least"] == pytest.approx(np.mean(rs >= r_prim))


def test_ablation_table_is_the_primary_predictor_by_layer_and_n():
    _, _, corr, _ = _panel()
    abl = comparison.ablation_table(corr, PRIMARY)
    assert abl.height == 1 and abl["role"][0] == "primary"
    assert abl["pearson"][0] == pytest.approx(
        corr.filter(pl.col("role") == "primary")["pearson"][0])


def test_no_primary_row_gives_an_empty_panel():
    _, _, corr, _ = _panel()
    sts, oracle, observed, _ = _tables()
    out = comparison.comparison_table(corr, sts, observed, dict(PRIMARY, n_top=99))
    assert out.height == 0 and "predictor" in out.columns


def test_config_given_and_measured_delta_on_the_same_metric_are_two_runs():
    """Δ given in the config (no method, no seed) next to a fine-tuning run's Δ on the same
    metric: one panel each, each on its own Δ."""
    sts, oracle, observed, y = _tables()
    given = observed.drop("method", "seed").with_columns(pl.col("delta") * -2.0 + 0.1)
    kw = dict(n_boot=200, n_perm=200, seed=0)
    corr = pl.concat([correlation.correlation_table(sts, given, **kw),
                      correlation.correlation_table(sts, observed, **kw)],
                     how="diagonal_relaxed")
    corr = correlation.assign_roles(corr, PRIMARY)
    both = pl.concat([observed, given], how="diagonal_relaxed")
    cmp = comparison.comparison_table(corr, sts, both, PRIMARY, n_boot=100, seed=0)
    runs = {(r["method"], r["seed"]) for r in cmp.to_dicts()}
    assert runs == {(None, 0), ("lora", 0)}
    for method, delta in ((None, given["delta"]), ("lora", observed["delta"])):
        row = cmp.filter(pl.col("method").eq_missing(method), pl.col("predictor") == "sts_icl")
        assert row["pearson"][0] == pytest.approx(
            sps.pearsonr(sts["sts_icl"].to_numpy(), np.abs(delta.to_numpy()))[0])
        rand = cmp.filter(pl.col("method").eq_missing(method),
                          pl.col("predictor") == "sts_act_randdims")
        draws = np.array(sts["rand_act"].to_list())
        rs = [sps.pearsonr(draws[:, j], np.abs(delta.to_numpy()))[0] for j in range(6)]
        r_act = sps.pearsonr(sts["sts_act"].to_numpy(), np.abs(delta.to_numpy()))[0]
        # compared with sts_act (the formula these draws replace D_N in), not the primary
        assert rand["share_at_least"][0] == pytest.approx(np.mean(np.array(rs) >= r_act))


def test_two_saes_of_a_layer_stay_apart():
    """A sweep: a second SAE's rows of the same layer. The panel is the primary SAE's alone, the
    ablation table has one row per SAE with its width, k and L0, and without a named SAE the
    panel refuses to mix them."""
    sts, oracle, observed, y = _tables()
    rng = np.random.default_rng(3)
    other = sts.with_columns(sts_icl=pl.Series(rng.normal(size=len(DOMAINS))))
    both = pl.concat([sts.with_columns(sae=pl.lit("k32")), other.with_columns(sae=pl.lit("k8"))])
    kw = dict(n_boot=200, n_perm=200, seed=0)
    corr = correlation.correlation_table(both, observed, **kw)
    primary = dict(PRIMARY, sae="k32")
    corr = correlation.assign_roles(corr, primary)
    prim = corr.filter(pl.col("role") == "primary")
    assert prim["sae"].to_list() == ["k32"]
    assert prim["pearson"][0] == pytest.approx(sps.pearsonr(sts["sts_icl"].to_numpy(), y)[0])
    for name, frame in (("k32", sts), ("k8", other)):
        row = corr.filter(pl.col("sae") == name, pl.col("predictor") == "sts_icl",
                          pl.col("protocol") == "all", pl.col("target") == "abs")
        assert row["pearson"][0] == pytest.approx(
            sps.pearsonr(frame["sts_icl"].to_numpy(), y)[0])
    cmp = comparison.comparison_table(corr, both, observed, primary, n_boot=100, seed=0)
    got = cmp.filter(pl.col("predictor") == "sts_icl")["pearson"][0]
    assert got == pytest.approx(prim["pearson"][0]) and set(cmp["sae"]) == {"k32"}
    saes = pl.DataFrame({"layer": [3, 3], "sae": ["k32", "k8"], "width": [64, 64],
                         "k": [32, 8], "l0": [31.5, 8.0]})
    abl = comparison.ablation_table(corr, primary, saes)
    assert abl.columns[:6] == ["method", "seed", "layer", "sae", "width", "k"]
    assert abl.select("sae", "k", "l0").rows() == [("k32", 32, 31.5), ("k8", 8, 8.0)]
    with pytest.raises(ValueError, match="names no SAE"):
        comparison.comparison_table(corr, both, observed, PRIMARY, n_boot=100, seed=0)
