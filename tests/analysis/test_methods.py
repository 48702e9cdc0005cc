"""The fine-tuning methods table against hand computations."""

from __future__ import annotations

import math

import polars as pl
import pytest

from stsflow.analysis.methods import method_table


def observed():
    rows = []
    for method, deltas in (("lora", [0.10, -0.02, -0.05, 0.01]),
                           ("sae_select-top-k4", [0.04, 0.0, -0.01, 0.03])):
        for dom, d, se in zip(["math", "law", "history", "physics"], deltas,
                              [0.01, 0.02, 0.01, 0.03]):
            rows.append({"method": method, "seed": 0, "domain": dom, "metric": "acc",
                         "delta": d, "delta_se": se, "ci_low": d - 2 * se,
                         "ci_high": d + 2 * se})
    return pl.DataFrame(rows)


def test_target_apart_and_the_others_summarised():
    runs = {("lora", 0): {"n_trainable": 1000, "seconds": 12.5},
            ("sae_select-top-k4", 0): {"n_trainable": 128, "seconds": 3.0}}
    t = method_table(observed(), runs, "math")
    lora = t.filter(pl.col("method") == "lora").row(0, named=True)
    assert (lora["target_delta"], lora["n_trainable"], lora["seconds"]) == (0.10, 1000, 12.5)
    assert lora["target_ci_low"] == pytest.approx(0.08)
    others = [-0.02, -0.05, 0.01]
    mean = sum(others) / 3
    se = math.sqrt(0.02 ** 2 + 0.01 ** 2 + 0.03 ** 2) / 3
    assert lora["others_mean"] == pytest.approx(mean)
    assert lora["others_ci_low"] == pytest.approx(mean - 1.959963984540054 * se)
    assert lora["others_ci_high"] == pytest.approx(mean + 1.959963984540054 * se)
    assert (lora["others_worst"], lora["worst_domain"]) == (-0.05, "history")
    sd = math.sqrt(sum((x - mean) ** 2 for x in others) / 2)
    assert lora["others_spread"] == pytest.approx(sd)
    # below: CI entirely below 0 (history: -0.05 ± 0.02); above: none of the others
    assert (lora["n_below"], lora["n_above"], lora["n_others"]) == (1, 0, 3)
    sel = t.filter(pl.col("method") == "sae_select-top-k4").row(0, named=True)
    assert (sel["n_below"], sel["n_above"], sel["n_trainable"]) == (0, 0, 128)


def test_without_a_target_every_domain_is_an_other_and_missing_runs_give_nulls():
    t = method_table(observed(), {}, None)
    r = t.filter(pl.col("method") == "lora").row(0, named=True)
    assert r["target_delta"] is None and r["n_others"] == 4
    assert r["others_mean"] == pytest.approx((0.10 - 0.02 - 0.05 + 0.01) / 4)
    assert r["n_trainable"] is None and r["seconds"] is None
    assert r["n_above"] == 1  # math: 0.10 ± 0.02


def test_gain_kept_is_the_target_delta_over_the_plain_runs():
    # an accuracy (higher is better): the gain kept needs the metric's direction
    obs = observed().with_columns(metric=pl.lit("option_loglik"))
    mix = obs.filter(pl.col("method") == "lora").with_columns(
        method=pl.lit("lora-mix_sts"), delta=pl.col("delta") * 0.5)
    t = method_table(pl.concat([obs, mix]), {}, "math")
    row = t.filter(pl.col("method") == "lora-mix_sts").row(0, named=True)
    assert row["gain_kept"] == pytest.approx(0.05 / 0.10) and row["gain_kept_reason"] is None
    assert t.filter(pl.col("method") == "lora")["gain_kept"][0] is None
    # the plain run lost on its target: no share of a gain to report
    lost = pl.concat([obs, mix]).with_columns(delta=-pl.col("delta").abs()).with_columns(
        ci_low=pl.col("delta") - 2 * pl.col("delta_se"),
        ci_high=pl.col("delta") + 2 * pl.col("delta_se"))
    assert method_table(lost, {}, "math").filter(
        pl.col("method") == "lora-mix_sts")["gain_kept"][0] is None


def plain_and_mixes(metric, plain, mixes):
    """The observed rows of a plain LoRA run (target Δ and CI ``plain``) and mixture runs
    (target Δ each) on the target domain math, with one other domain."""
    rows = []
    for method, (d, lo, hi) in [("lora", plain)] + [(m, (d, d - 0.05, d + 0.05))
                                                     for m, d in mixes.items()]:
        rows += [{"method": method, "seed": 0, "domain": "math", "metric": metric, "delta": d,
                  "delta_se": 0.02, "ci_low": lo, "ci_high": hi},
                 {"method": method, "seed": 0, "domain": "law", "metric": metric,
                  "delta": 0.01, "delta_se": 0.01, "ci_low": -0.01, "ci_high": 0.03}]
    return pl.DataFrame(rows)


def test_gain_kept_only_where_the_plain_run_improved_beyond_its_interval():
    """The default's plain LoRA run worsened its target (Δ nll +0.203 [+0.152, +0.250], Δ option
    accuracy -0.075 [-0.200, +0.050]): n/a with the reason. NLL is better lower: a plain run that
    lowered it beyond its interval has a gain, and the share is the ratio of the two Δ."""
    mixes = {"lora-mix_sts": 0.151, "lora-mix_uniform": 0.151}
    for metric, plain in (("nll", (0.203, 0.152, 0.250)),
                          ("option_loglik", (-0.075, -0.200, 0.050)),
                          # above 0 but within its interval: no gain shown either
                          ("option_loglik", (0.05, -0.01, 0.11)),
                          ("nll", (-0.02, -0.05, 0.01))):
        t = method_table(plain_and_mixes(metric, plain, mixes), {}, "math")
        for r in t.filter(pl.col("method") != "lora").iter_rows(named=True):
            assert r["gain_kept"] is None, (metric, plain)
            why = r["gain_kept_reason"]
            assert "did not improve math beyond its interval" in why
            assert f"{plain[0]:+.3f} [{plain[1]:+.3f}, {plain[2]:+.3f}]" in why
            assert ("lower is better" if metric == "nll" else "higher is better") in why
        assert t.filter(pl.col("method") == "lora")["gain_kept_reason"][0] is None
    # improved beyond the interval, in each direction: the ratio of the target Δ
    t = method_table(plain_and_mixes("nll", (-0.20, -0.25, -0.15), {"lora-mix_sts": -0.05,
                                                                    "lora-mix_oracle": 0.02}),
                     {}, "math")
    got = dict(t.select("method", "gain_kept").iter_rows())
    assert got["lora-mix_sts"] == pytest.approx(-0.05 / -0.20)  # a quarter of the gain kept
    assert got["lora-mix_oracle"] == pytest.approx(0.02 / -0.20)  # the gain undone, and more
    t = method_table(plain_and_mixes("generate", (0.10, 0.02, 0.18), {"lora-mix_sts": 0.07}),
                     {}, "math")
    assert t.filter(pl.col("method") == "lora-mix_sts")["gain_kept"][0] == pytest.approx(0.7)


def test_gain_kept_says_why_it_is_missing():
    obs = plain_and_mixes("acc", (0.10, 0.08, 0.12), {"lora-mix_sts": 0.05})
    r = method_table(obs, {}, "math").filter(pl.col("method") == "lora-mix_sts").row(
        0, named=True)
    assert r["gain_kept"] is None and "direction of metric 'acc'" in r["gain_kept_reason"]
    obs = obs.with_columns(metric=pl.lit("accuracy"))
    alone = obs.filter(pl.col("method") != "lora")
    r = method_table(alone, {}, "math").row(0, named=True)
    assert r["gain_kept"] is None and "no plain run" in r["gain_kept_reason"]
    r = method_table(obs, {}, None).filter(pl.col("method") == "lora-mix_sts").row(0, named=True)
    assert r["gain_kept"] is None and "no target domain" in r["gain_kept_reason"]
    no_ci = obs.with_columns(ci_low=pl.lit(None, pl.Float64))
    r = method_table(no_ci, {}, "math").filter(pl.col("method") == "lora-mix_sts").row(
        0, named=True)
    assert r["gain_kept"] is None and "no interval" in r["gain_kept_reason"]


def test_the_directions_are_the_metric_registrys():
    from stsflow.evaluate.registry import higher_is_better, metrics

    assert {m: higher_is_better(m) for m in ("nll", "option_loglik", "generate", "accuracy",
                                              "given")} == {
        "nll": False, "option_loglik": True, "generate": True, "accuracy": True, "given": None}
    assert all(higher_is_better(m.name) is m.higher_is_better for m in metrics().values())


def test_prediction_by_run_sets_icl_and_true_shift_side_by_side():
    """Per run: the primary predictor's ρ and its _oracle ρ at the primary site only (other
    layers, N, metrics, protocols and runs are other rows), with the overlap at that site."""
    from stsflow.analysis.methods import prediction_by_run

    def row(pred, method, rho, **kw):
        base = {"layer": 12, "sae": "main", "n_top": 100, "metric": "acc", "target": "abs",
                "protocol": "all", "seed": 0, "n_domains": 10, "pearson_ci_low": rho - 0.1,
                "pearson_ci_high": rho + 0.1, "perm_p": 0.01}
        return {**base, "predictor": pred, "method": method, "pearson": rho, **kw}

    corr = pl.DataFrame([
        row("sts_act", "lora", 0.8), row("sts_act_oracle", "lora", 0.9),
        row("sts_act", "grpo", 0.1), row("sts_act_oracle", "grpo", 0.7),
        # elsewhere: never picked
        row("sts_act", "grpo", -0.5, n_top=50), row("sts_act", "grpo", -0.6, protocol="extremes"),
        row("sts_act_oracle", "grpo", -0.7, metric="nll"), row("sts_icl", "grpo", -0.8),
        row("sts_act", "grpo", -0.9, seed=1),
    ])
    overlap = pl.DataFrame({"method": ["lora", "grpo", "grpo"], "seed": [0, 0, 0],
                            "layer": [12, 12, 12], "sae": ["main"] * 3, "n_top": [100, 100, 50],
                            "overlap": [0.4, 0.05, 0.9]})
    primary = {"predictor": "sts_act", "layer": 12, "sae": "main", "n_top": 100,
               "metric": "acc", "target": "abs", "protocol": "all"}
    out = prediction_by_run(corr, overlap, primary).sort("method", "seed", "metric")
    assert out.select("method", "seed", "metric", "icl", "true", "overlap").rows() == [
        ("grpo", 0, "acc", 0.1, 0.7, 0.05), ("grpo", 0, "nll", None, -0.7, 0.05),
        ("grpo", 1, "acc", -0.9, None, None), ("lora", 0, "acc", 0.8, 0.9, 0.4)]
    out = out.filter(pl.col("metric") == "acc")
    assert out.filter(pl.col("method") == "grpo")["icl_ci_low"][0] == pytest.approx(0.0)
    # an _oracle primary names the same pair of rows
    again = prediction_by_run(corr, overlap, dict(primary, predictor="sts_act_oracle"))
    assert again.filter(pl.col("metric") == "acc").sort("method", "seed").select(
        "icl", "true").rows() == out.select("icl", "true").rows()
    # a baseline primary (no true-shift twin) is compared through sts_icl, the paper's score
    corr2 = pl.concat([corr, pl.DataFrame([row("sts_icl_oracle", "lora", 0.3),
                                           row("sts_icl", "lora", 0.2)])], how="diagonal")
    for baseline in ("grad_sim", "before_after_oracle"):  # the latter has no ICL row
        corr3 = pl.concat([corr2, pl.DataFrame([row("before_after_oracle", "lora", 0.5)])],
                          how="diagonal")
        base = prediction_by_run(corr3, overlap, dict(primary, predictor=baseline))
        assert base.filter((pl.col("method") == "lora") & (pl.col("metric") == "acc")).select(
            "predictor", "icl", "true").rows() == [("sts_icl", 0.2, 0.3)]
    assert prediction_by_run(corr, overlap, None).height == 0


def test_prediction_by_run_carries_holm_p_roles_and_the_overlaps_chance():
    """Every row of the run-by-run table beside its raw permutation p: its Holm-adjusted p and
    role from assign_roles (only the primary method's ICL row at the primary metric is the
    primary test), and the overlap's chance level, p and n_effective from the overlap table."""
    from stsflow.analysis import correlation
    from stsflow.analysis.methods import BY_RUN_COLUMNS, prediction_by_run

    rows = [("sts_icl", "lora", 0.004), ("sts_icl_oracle", "lora", 0.02),
            ("sts_act", "lora", 0.01), ("sts_icl", "grpo", 0.03), ("sts_icl_oracle", "grpo", 0.3),
            ("sts_act", "grpo", 0.2)]
    corr = pl.DataFrame([{"model": "m", "sft": "s", "layer": 12, "n_top": 100, "metric": "acc",
                          "target": "abs", "protocol": "all", "seed": 0, "n_domains": 10,
                          "predictor": p, "method": m, "pearson": 0.5, "pearson_ci_low": 0.1,
                          "pearson_ci_high": 0.8, "perm_p": pp} for p, m, pp in rows])
    primary = {"predictor": "sts_icl", "layer": 12, "n_top": 100, "metric": "acc",
               "target": "abs", "protocol": "all", "method": "lora"}
    corr = correlation.assign_roles(corr, primary)
    overlap = pl.DataFrame({"method": ["lora", "grpo"], "seed": [0, 0], "layer": [12, 12],
                            "n_top": [100, 100], "overlap": [0.4, 0.3],
                            "overlap_chance": [0.25, 0.3], "overlap_p": [0.001, 0.6],
                            "n_effective": [100, 87]})
    out = prediction_by_run(corr, overlap, primary).sort("method")
    assert out.columns == list(BY_RUN_COLUMNS)
    got = {r["method"]: r for r in out.iter_rows(named=True)}
    assert (got["lora"]["icl_role"], got["lora"]["true_role"]) == ("primary", "exploratory")
    assert got["lora"]["icl_holm_p"] == 0.004  # its own p, unadjusted
    # lora's sts family without the primary row {0.02, 0.01}: 0.02*1 -> max(0.02, 0.02)
    assert got["lora"]["true_holm_p"] == pytest.approx(0.02)
    # grpo's sts family {0.03, 0.3, 0.2}: 0.09, 0.4, 0.4
    assert (got["grpo"]["icl_role"], got["grpo"]["true_role"]) == ("exploratory", "exploratory")
    assert got["grpo"]["icl_holm_p"] == pytest.approx(0.09)
    assert got["grpo"]["true_holm_p"] == pytest.approx(0.4)
    assert (got["grpo"]["overlap_chance"], got["grpo"]["overlap_p"],
            got["grpo"]["n_effective"]) == (0.3, 0.6, 87)
