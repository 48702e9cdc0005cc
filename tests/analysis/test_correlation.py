import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from stsflow.analysis import correlation, observed, resampling

FAST = dict(n_boot=300, n_perm=500)
DOMAINS8 = ["biology", "business", "chemistry", "engineering", "health", "law", "math",
            "physics"]


def _noisy(n=14, seed=1, noise=0.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + noise * rng.normal(size=n)


def test_correlate_matches_scipy():
    x, y = _noisy()
    r = resampling.correlate(x, y, **FAST)
    pr, sr = sps.pearsonr(x, y), sps.spearmanr(x, y)
    assert r["n_domains"] == 14
    assert r["pearson"] == pytest.approx(pr.statistic)
    assert r["pearson_p"] == pytest.approx(pr.pvalue)
    assert r["spearman"] == pytest.approx(sr.statistic)
    assert r["spearman_p"] == pytest.approx(sr.pvalue)
    assert r["r2"] == pytest.approx(pr.statistic ** 2)
    assert set(r) == set(correlation.STAT_COLUMNS)


def test_correlate_ci_contains_estimate_and_narrows_with_level():
    x, y = _noisy(n=20)
    r = resampling.correlate(x, y, n_boot=1000, n_perm=100)
    assert r["pearson_ci_low"] < r["pearson"] < r["pearson_ci_high"]
    r80 = resampling.correlate(x, y, n_boot=1000, n_perm=100, ci=0.8)
    assert r["pearson_ci_low"] <= r80["pearson_ci_low"] <= r80["pearson_ci_high"] \
        <= r["pearson_ci_high"]


def test_correlate_perfect_gives_minimal_perm_p():
    rng = np.random.default_rng(3)
    x = rng.normal(size=20)
    r = resampling.correlate(x, 2 * x + 1, n_boot=200, n_perm=2000)
    assert r["pearson"] == pytest.approx(1.0)
    assert r["perm_p"] == pytest.approx(1 / 2001)
    # a perfect negative line is just as extreme for a two-sided test
    assert resampling.correlate(x, -x, n_boot=0, n_perm=2000)["perm_p"] == pytest.approx(1 / 2001)


def test_correlate_perm_p_is_uniformish_under_null():
    x, _ = _noisy(n=12, seed=5)
    y = np.random.default_rng(6).normal(size=12)
    r = resampling.correlate(x, y, n_boot=0, n_perm=4000)
    # permutation and t-test p-values agree closely for roughly normal data
    assert abs(r["perm_p"] - r["pearson_p"]) < 0.05


def test_correlate_deterministic_and_seed_sensitive():
    x, y = _noisy(n=10)
    a = resampling.correlate(x, y, seed=7, **FAST)
    b = resampling.correlate(x, y, seed=7, **FAST)
    c = resampling.correlate(x, y, seed=8, **FAST)
    assert a == b
    assert (a["pearson_ci_low"], a["perm_p"]) != (c["pearson_ci_low"], c["perm_p"])
    # bootstrap and permutation use independent streams
    assert resampling.correlate(x, y, seed=7, n_boot=50, n_perm=500)["perm_p"] == a["perm_p"]


@pytest.mark.parametrize("x,y", [
    ([1.0, 2.0], [3.0, 1.0]),                     # n < 3
    ([], []),
    ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]),  # x constant
    ([1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]),  # y constant
    ([1.0, 2.0, np.nan, 4.0], [1.0, np.nan, 2.0, 3.0]),  # only 2 finite pairs
])
def test_correlate_degenerate_gives_nan(x, y):
    r = resampling.correlate(x, y, **FAST)
    assert r["n_domains"] == sum(1 for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b))
    assert all(math.isnan(r[k]) for k in correlation.STAT_COLUMNS if k != "n_domains")


def test_correlate_tiny_sample_drops_constant_resamples():
    r = resampling.correlate([1.0, 2.0, 3.0], [1.0, 3.0, 2.0], n_boot=500, n_perm=100)
    assert -1.0 <= r["pearson_ci_low"] <= r["pearson_ci_high"] <= 1.0
    # many ties: most resamples have a constant variable, so no CI rather than a biased one
    r = resampling.correlate([1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0], n_boot=500, n_perm=100)
    assert math.isfinite(r["pearson"]) and math.isnan(r["pearson_ci_low"])


def test_correlate_rejects_bad_arguments():
    with pytest.raises(ValueError):
        resampling.correlate([1, 2, 3], [1, 2])
    with pytest.raises(ValueError):
        resampling.correlate([1, 2, 3], [1, 2, 3], ci=1.5)


def test_extreme_domains():
    names = [f"d{i:02d}" for i in range(14)]
    vals = dict(zip(names, [5.0, 0.1, 3.0, 9.8, 0.2, 6.3, 0.3, 4.4, 2.9, 0.0, 1.5, 2.4, 7.0, 2.6]))
    got = correlation.extreme_domains(vals, k=4)
    assert got == sorted(["d03", "d12", "d05", "d00", "d09", "d01", "d04", "d06"])
    six = dict(list(vals.items())[:6])
    assert correlation.extreme_domains(six, k=4) == sorted(six)
    # ties broken by name, both ends
    tied = {n: 1.0 for n in "abcdefghij"}
    assert correlation.extreme_domains(tied, k=2) == ["a", "b", "i", "j"]  # groups never overlap
    tied.update(a=0.0, j=2.0)
    assert correlation.extreme_domains(tied, k=2) == ["a", "b", "i", "j"]
    assert correlation.extreme_domains({"a": float("nan"), "b": 1.0}, k=4) == ["b"]


# ---------------------------------------------------------------- correlation_table

def _synthetic(domains=DOMAINS8, oracle=False):
    rng = np.random.default_rng(0)
    delta = {d: float(v) for d, v in zip(domains, rng.normal(scale=3, size=len(domains)))}
    rows = []
    for layer in (10, 20):
        for n_top in (50, 100):
            for d in domains:
                base = abs(delta[d]) + rng.normal(scale=1.0 + layer / 10)
                row = {"model": "m", "layer": layer, "sft": "limo", "domain": d,
                       "n_top": n_top, "sts_act": base * n_top,
                       "sts_icl": rng.normal() + 0.1 * base, "sts_sq": base ** 2,
                       "n_tokens": 1000}
                if oracle:
                    row["sts_act_oracle"] = abs(delta[d])
                rows.append(row)
    sts = pl.DataFrame(rows)
    observed = pl.DataFrame({"model": "m", "sft": "limo", "domain": list(delta),
                             "metric": "acc", "delta": list(delta.values())})
    return sts, observed


EXPECTED_COLUMNS = ["model", "sft", "layer", "n_top", "predictor", "target", "protocol", "metric",
                    *correlation.STAT_COLUMNS, *correlation.ROW_COLUMNS]


def test_correlation_table_shape_and_values():
    sts, observed = _synthetic()
    # a domain only one table knows is ignored
    observed = pl.concat([observed, pl.DataFrame({"model": "m", "sft": "limo",
                                                  "domain": ["unknown"], "metric": "acc",
                                                  "delta": [50.0]})])
    corr = correlation.correlation_table(sts, observed, seed=3, **FAST)
    assert corr.columns == EXPECTED_COLUMNS
    assert corr.height == 2 * 2 * 3 * 2 * 2 * 1
    assert set(corr["predictor"]) == {"sts_act", "sts_icl", "sts_sq"}
    assert (corr["n_domains"] == 8).all()  # 8 ≤ 2k: extremes uses every domain too

    row = corr.filter((pl.col("layer") == 20) & (pl.col("n_top") == 50)
                      & (pl.col("predictor") == "sts_icl") & (pl.col("target") == "abs")
                      & (pl.col("protocol") == "all")).to_dicts()
    assert len(row) == 1
    sub = (sts.filter((pl.col("layer") == 20) & (pl.col("n_top") == 50))
           .join(observed, on=["model", "sft", "domain"]))
    direct = resampling.correlate(sub["sts_icl"], sub["delta"].abs(), seed=3, **FAST)
    assert {k: row[0][k] for k in correlation.STAT_COLUMNS} == pytest.approx(direct, nan_ok=True)

    signed = corr.filter((pl.col("layer") == 20) & (pl.col("n_top") == 50)
                         & (pl.col("predictor") == "sts_icl") & (pl.col("target") == "signed")
                         & (pl.col("protocol") == "all"))
    assert signed["pearson"][0] == pytest.approx(
        sps.pearsonr(sub["sts_icl"], sub["delta"]).statistic)


def test_correlation_table_extremes_and_oracle_variant():
    domains = [f"dom{i:02d}" for i in range(14)]
    sts, observed = _synthetic(domains, oracle=True)
    corr = correlation.correlation_table(sts, observed, **FAST)
    assert set(corr["predictor"]) == {"sts_act", "sts_icl", "sts_sq", "sts_act_oracle"}
    assert corr.height == 2 * 2 * 4 * 2 * 2
    ext = corr.filter(pl.col("protocol") == "extremes")
    assert (ext["n_domains"] == 8).all()
    assert (corr.filter(pl.col("protocol") == "all")["n_domains"] == 14).all()
    # the oracle predictor is |Δ| itself
    oracle = corr.filter((pl.col("predictor") == "sts_act_oracle") & (pl.col("target") == "abs"))
    assert oracle["pearson"].to_numpy() == pytest.approx(1.0)

    chosen = correlation.extreme_domains(dict(zip(observed["domain"], observed["delta"].abs())))
    sub = (sts.filter((pl.col("layer") == 10) & (pl.col("n_top") == 100)
                      & pl.col("domain").is_in(chosen))
           .join(observed, on=["model", "sft", "domain"]))
    row = ext.filter((pl.col("layer") == 10) & (pl.col("n_top") == 100)
                     & (pl.col("predictor") == "sts_act") & (pl.col("target") == "abs"))
    assert row["pearson"][0] == pytest.approx(
        sps.pearsonr(sub["sts_act"], sub["delta"].abs()).statistic)


def test_correlation_table_method_seed_grouping():
    sts, observed = _synthetic()
    frames = []
    for method in ("full", "lora"):
        for seed in (0, 1, 2):
            noise = np.random.default_rng(seed + 10 * (method == "lora")).normal(size=8)
            frames.append(observed.with_columns(delta=pl.col("delta") + pl.Series(noise),
                                                method=pl.lit(method), seed=pl.lit(seed),
                                                abs_delta=(pl.col("delta") + noise).abs()))
    obs = pl.concat(frames)
    corr = correlation.correlation_table(sts, obs, **FAST)
    assert corr.columns == [*EXPECTED_COLUMNS[:8], "method", "seed", *EXPECTED_COLUMNS[8:]]
    assert corr.height == 2 * 2 * 3 * 2 * 2 * 2 * 3
    assert corr.select("method", "seed").unique().height == 6

    summ = correlation.seed_summary(corr)
    assert summ.height == corr.height // 3
    assert {"n_seeds", "pearson_mean", "pearson_std"} <= set(summ.columns)
    assert "seed" not in summ.columns and "method" in summ.columns
    assert (summ["n_seeds"] == 3).all()
    one = summ.row(0, named=True)
    vals = corr.filter((pl.col("predictor") == one["predictor"]) & (pl.col("layer") == one["layer"])
                       & (pl.col("n_top") == one["n_top"]) & (pl.col("target") == one["target"])
                       & (pl.col("protocol") == one["protocol"])
                       & (pl.col("method") == one["method"]))["pearson"].to_numpy()
    assert one["pearson_mean"] == pytest.approx(vals.mean())
    assert one["pearson_std"] == pytest.approx(vals.std(ddof=1))

    single = correlation.seed_summary(corr.filter(pl.col("seed") == 0))
    assert (single["n_seeds"] == 1).all() and single["pearson_std"].is_nan().all()


def test_correlation_table_rejects_duplicates_and_missing_columns():
    sts, observed = _synthetic()
    with pytest.raises(ValueError, match="duplicated"):
        correlation.correlation_table(sts, pl.concat([observed, observed]), **FAST)
    with pytest.raises(ValueError, match="lacks"):
        correlation.correlation_table(sts, observed.drop("delta"), **FAST)


def test_correlation_table_no_overlap_is_empty():
    sts, observed = _synthetic()
    corr = correlation.correlation_table(sts, observed.with_columns(sft=pl.lit("other")), **FAST)
    assert corr.height == 0 and corr.columns == EXPECTED_COLUMNS


# ---------------------------------------------------------------- intervals, Holm, noise

def _scipy_pearson(a, b, axis=-1):
    ac = a - a.mean(axis=axis, keepdims=True)
    bc = b - b.mean(axis=axis, keepdims=True)
    return (ac * bc).sum(axis) / np.sqrt((ac * ac).sum(axis) * (bc * bc).sum(axis))


@pytest.mark.parametrize("n,noise,ci", [(14, 0.8, 0.95), (8, 1.5, 0.95), (25, 0.3, 0.9)])
def test_bca_matches_scipy_bootstrap_with_the_same_resamples(n, noise, ci):
    x, y = _noisy(n=n, seed=n, noise=noise)
    ref = sps.bootstrap((x, y), _scipy_pearson, paired=True, vectorized=True, method="BCa",
                        n_resamples=3000, confidence_level=ci, rng=np.random.default_rng(5))
    got = resampling.pearson_bca(x, y, n_boot=3000, rng=np.random.default_rng(5), ci=ci)
    assert got == pytest.approx(tuple(ref.confidence_interval), abs=1e-12)


def test_correlate_bca_within_monte_carlo_tolerance_of_scipy():
    x, y = _noisy(n=12, seed=2, noise=0.7)
    ref = sps.bootstrap((x, y), _scipy_pearson, paired=True, vectorized=True, method="BCa",
                        n_resamples=20000, rng=np.random.default_rng(123))
    r = resampling.correlate(x, y, n_boot=20000, n_perm=0, seed=4)
    assert r["pearson_ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.02)
    assert r["pearson_ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.02)
    # BCa is not the percentile interval: here the bias correction moves it visibly
    boot = sps.bootstrap((x, y), _scipy_pearson, paired=True, vectorized=True,
                         method="percentile", n_resamples=20000, rng=np.random.default_rng(123))
    assert abs(boot.confidence_interval.low - ref.confidence_interval.low) > 0.02


def test_fisher_interval_matches_scipy():
    x, y = _noisy(n=11, seed=9, noise=1.0)
    r = resampling.correlate(x, y, n_boot=0, n_perm=0)
    ref = sps.pearsonr(x, y).confidence_interval(0.95)
    assert (r["pearson_fisher_low"], r["pearson_fisher_high"]) == pytest.approx(
        (ref.low, ref.high))
    assert math.isnan(resampling.fisher_interval(0.5, 3)[0])


def test_holm_hand_worked_example():
    # m = 4, sorted p: 0.005, 0.01, 0.03, 0.04
    # scaled by (m - i + 1): 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04
    # running maximum: 0.02, 0.03, 0.06, 0.06 -> back in input order
    got = resampling.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN entries stay NaN and do not count in m (m = 2: 0.5*2 = 1.0, then max(1.0, 0.6) = 1.0)
    got = resampling.holm([0.6, math.nan, 0.5])
    assert got[[0, 2]] == pytest.approx([1.0, 1.0]) and math.isnan(got[1])
    assert resampling.holm([0.2]) == pytest.approx([0.2])
    assert resampling.holm([]).size == 0


def test_delta_se_is_the_paired_standard_error():
    rng = np.random.default_rng(4)
    before = rng.integers(0, 2, size=40).astype(float)
    after = np.where(rng.random(40) < 0.2, 1 - before, before)
    d = after - before
    assert observed.delta_se(before, after) == pytest.approx(np.sqrt(np.var(d, ddof=1) / d.size))
    assert observed.delta_se(before, after) == pytest.approx(sps.sem(d))
    assert math.isnan(observed.delta_se([1.0], [0.0]))


def test_noise_ceiling_signed_is_the_attenuation_bound():
    """Equal SEs, signed Δ: the ceiling is √(τ²/(τ² + SE²)) with τ² = var(Δ̂) − SE² (written out
    from the classical attenuation formula, not from the code)."""
    rng = np.random.default_rng(11)
    delta = rng.normal(scale=0.05, size=12)
    se = np.full(12, 0.03)
    tau2 = np.var(delta, ddof=1) - 0.03 ** 2
    expect = np.sqrt(tau2 / (tau2 + 0.03 ** 2))
    got = resampling.noise_ceiling(delta, se, target="signed", n_sim=20000, seed=1)
    assert got == pytest.approx(expect, abs=0.03)


@pytest.mark.parametrize("target", ["abs", "signed"])
def test_noise_ceiling_is_not_biased_high_on_pure_noise(target):
    """True Δ ≡ 0 in every domain: whatever is measured is noise, so no predictor can correlate
    with it; the ceiling must say so (the naive corr(f(Δ̂), f(Δ̂ + ε)) reports 0.3-0.7 here)."""
    rng = np.random.default_rng(5)
    values = []
    for _ in range(200):
        se = np.full(14, 0.02)
        measured = rng.normal(0.0, se)
        values.append(resampling.noise_ceiling(measured, se, target=target, n_sim=300, seed=2))
    assert np.mean(values) < 0.3 and np.median(values) == 0.0


@pytest.mark.parametrize("target", ["abs", "signed"])
def test_noise_ceiling_tracks_the_achievable_correlation(target):
    """Known truth: the true Δ spread equals the noise. On average over data sets the ceiling
    estimates corr(f(Δ_true), f(Δ̂)), the best any predictor can do (direct Monte Carlo)."""
    f = np.abs if target == "abs" else (lambda v: v)
    rng = np.random.default_rng(7)
    achieved, ceilings = [], []
    for _ in range(300):
        truth = rng.normal(0.0, 0.05, size=14)
        se = np.full(14, 0.05)
        measured = truth + rng.normal(0.0, se)
        achieved.append(np.corrcoef(f(truth), f(measured))[0, 1])
        ceilings.append(resampling.noise_ceiling(measured, se, target=target, n_sim=300, seed=3))
    assert np.mean(ceilings) == pytest.approx(np.mean(achieved), abs=0.12)


def test_noise_ceiling_edges():
    delta = np.array([0.1, -0.2, 0.3, 0.05])
    assert resampling.noise_ceiling(delta, np.zeros(4)) == pytest.approx(1.0)
    assert math.isnan(resampling.noise_ceiling(delta, [0.1, np.nan, 0.1, 0.1]))  # SE unknown
    assert math.isnan(resampling.noise_ceiling(delta[:2], np.zeros(2)))
    # more noise, lower ceiling; noise as large as the spread: nothing can be seen
    assert resampling.noise_ceiling(delta, np.full(4, 0.1)) < resampling.noise_ceiling(delta, np.full(4, 0.05))
    assert resampling.noise_ceiling(delta, np.full(4, 0.3)) == 0.0
    with pytest.raises(ValueError):
        resampling.noise_ceiling(delta, np.zeros(4), target="bad")


def test_correlation_table_extremes_untested_and_ceiling_needs_se():
    domains = [f"dom{i:02d}" for i in range(12)]
    sts, observed = _synthetic(domains)
    corr = correlation.correlation_table(sts, observed, **FAST)
    ext = corr.filter(pl.col("protocol") == "extremes")
    for col in ("pearson_p", "spearman_p", "perm_p"):
        assert ext[col].is_nan().all()
        assert corr.filter(pl.col("protocol") == "all")[col].is_finite().all()
    assert (ext["ci_method"].str.contains("descriptive")).all()
    assert ext["pearson_ci_low"].is_finite().any()  # intervals are still there, as descriptive
    assert corr["noise_ceiling"].is_nan().all()  # no delta_se: Δ given without item data

    se = np.random.default_rng(3).uniform(0.1, 0.5, size=len(domains))
    corr = correlation.correlation_table(sts, observed.with_columns(delta_se=pl.Series(se)), **FAST)
    row = corr.filter((pl.col("protocol") == "all") & (pl.col("target") == "abs"))
    assert row["noise_ceiling"].n_unique() == 1  # one per domain set and target
    # against an independent simulation of the same definition
    sim = np.random.default_rng(7)
    d = observed["delta"].to_numpy()
    direct = np.mean([np.corrcoef(np.abs(d), np.abs(d + sim.normal(0.0, se)))[0, 1]
                      for _ in range(4000)])
    assert row["noise_ceiling"][0] == pytest.approx(direct, abs=0.02)


def _roles_table():
    """perm_p written out by hand: seed 0 has three exploratory rows, the primary row and an
    extremes row; seed 1 one exploratory row."""
    rows = [
        # predictor, n_top, protocol, seed, perm_p
        ("sts_icl", 100, "all", 0, 0.002),     # primary
        ("sts_act", 100, "all", 0, 0.01),
        ("sts_sq", 100, "all", 0, 0.04),
        ("sts_icl", 50, "all", 0, 0.03),
        ("sts_icl", 100, "extremes", 0, math.nan),
        ("sts_act", 100, "all", 1, 0.02),
        ("sts_icl", 100, "all", 1, 0.2),       # primary of seed 1
    ]
    return pl.DataFrame([{"model": "m", "sft": "s", "layer": 3, "n_top": n, "predictor": v,
                          "target": "abs", "protocol": p, "metric": "acc", "seed": s,
                          "perm_p": pp} for v, n, p, s, pp in rows])


def test_assign_roles_primary_exploratory_descriptive_and_holm_families():
    primary = {"predictor": "sts_icl", "n_top": 100, "layer": 3, "metric": "acc",
               "protocol": "all", "target": "abs"}
    out = correlation.assign_roles(_roles_table(), primary)
    assert out["role"].to_list() == ["primary", "exploratory", "exploratory", "exploratory",
                                     "descriptive", "exploratory", "primary"]
    holm = out["holm_p"].to_numpy()
    # seed 0 family {0.01, 0.04, 0.03}: 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04) = 0.06
    assert holm[[1, 2, 3]] == pytest.approx([0.03, 0.06, 0.06])
    assert holm[0] == pytest.approx(0.002) and holm[6] == pytest.approx(0.2)  # unadjusted
    assert math.isnan(holm[4])  # descriptive: never tested
    assert holm[5] == pytest.approx(0.02)  # seed 1 is its own family of one
    # nothing matches: every tested row is exploratory
    none = correlation.assign_roles(_roles_table(), dict(primary, n_top=7))
    assert "primary" not in none["role"].to_list()


def test_one_primary_method_its_seeds_replicates_other_methods_exploratory():
    """report.primary.method: the declared run's seeds are the primary rows (each its own p);
    another method's row of the same predictor, N, metric is exploratory, Holm-adjusted with
    that method's other rows (Holm, hand-computed); a method of None is the run
    of Δ given in the config."""
    rows = [  # method, seed, predictor, perm_p
        ("lora", 0, "sts_icl", 0.004), ("lora", 1, "sts_icl", 0.03), ("lora", 0, "sts_act", 0.2),
        ("grpo", 0, "sts_icl", 0.01), ("grpo", 0, "sts_act", 0.02), ("grpo", 0, "sts_sq", 0.5),
        (None, None, "sts_icl", 0.04)]
    corr = pl.DataFrame([{"model": "m", "sft": "s", "layer": 3, "n_top": 100, "predictor": v,
                          "target": "abs", "protocol": "all", "metric": "acc", "method": m,
                          "seed": sd, "perm_p": p} for m, sd, v, p in rows],
                        schema_overrides={"method": pl.String, "seed": pl.Int64})
    primary = {"predictor": "sts_icl", "n_top": 100, "layer": 3, "metric": "acc",
               "protocol": "all", "target": "abs", "method": "lora"}
    out = correlation.assign_roles(corr, primary)
    assert out["role"].to_list() == ["primary", "primary", "exploratory", "exploratory",
                                     "exploratory", "exploratory", "exploratory"]
    holm = out["holm_p"].to_numpy()
    assert holm[[0, 1]] == pytest.approx([0.004, 0.03])  # replicates: unadjusted
    # grpo's family {0.01, 0.02, 0.5}: 0.03, max(0.04, 0.03) = 0.04, 0.5
    assert holm[[3, 4, 5]] == pytest.approx([0.03, 0.04, 0.5])
    assert holm[2] == pytest.approx(0.2) and holm[6] == pytest.approx(0.04)  # families of one
    given = correlation.assign_roles(corr, dict(primary, method=None))
    assert given["role"].to_list()[6] == "primary" and "primary" not in given["role"][:6]


def test_rho_above_its_noise_ceiling_is_flagged():
    """A predictor equal to the true |Δ| against a noisy measured Δ: ρ often lands above the
    ceiling (an expected value) by chance, and each row says whether it did."""
    rng = np.random.default_rng(5)
    domains = [f"d{i}" for i in range(8)]
    truth = rng.normal(0, 1, 8)
    se = np.full(8, 0.4)
    sts = pl.DataFrame({"model": "m", "sft": "s", "layer": 1, "n_top": 5, "domain": domains,
                        "sts_icl": np.abs(truth), "sts_act": rng.normal(size=8)})
    flags = []
    for k in range(6):
        obs = pl.DataFrame({"model": "m", "sft": "s", "domain": domains, "metric": "acc",
                            "delta": truth + rng.normal(0, 0.4, 8), "delta_se": se})
        corr = correlation.correlation_table(sts, obs, n_boot=100, n_perm=100, n_sim=300,
                                             seed=k)
        for r in corr.iter_rows(named=True):
            assert r["above_ceiling"] == (r["pearson"] > r["noise_ceiling"])
            flags.append(r["above_ceiling"])
    assert True in flags and False in flags
    assert correlation.above_ceiling(0.9, 0.8) is True
    assert correlation.above_ceiling(0.5, 0.8) is False
    assert correlation.above_ceiling(math.nan, 0.8) is None
    assert correlation.above_ceiling(0.9, math.nan) is None


def test_observed_table_standard_error(tmp_path):
    from stsflow.jobs.reduce import OBSERVED_COLUMNS, observed_table

    rng = np.random.default_rng(8)
    before = rng.random(30)
    after = before + rng.normal(0.05, 0.1, size=30)
    for name, vals in (("base", before), ("tuned", after)):
        pl.DataFrame({"question_id": np.arange(30), "metric": "nll", "value": vals,
                      "detail": "{}"}).write_parquet(tmp_path / f"{name}.parquet")
    observed_table("m", "s", {"law": tmp_path / "base.parquet"},
                   {("lora", 0, "law"): tmp_path / "tuned.parquet"}, tmp_path / "obs.parquet",
                   tmp_path / "obs.csv", n_boot=200)
    obs = pl.read_parquet(tmp_path / "obs.parquet")
    assert obs.columns == OBSERVED_COLUMNS
    d = after - before
    assert obs["delta_se"][0] == pytest.approx(d.std(ddof=1) / np.sqrt(30))
    assert obs["n_items"][0] == 30


def test_baselines_form_their_own_holm_family():
    """Rows of other predictor families (here repsim, a probe) leave STS's Holm p unchanged."""
    primary = {"predictor": "sts_icl", "n_top": 100, "layer": 3, "metric": "acc",
               "protocol": "all", "target": "abs"}
    base = correlation.assign_roles(_roles_table(), primary)
    extra = pl.DataFrame([{"model": "m", "sft": "s", "layer": 3, "n_top": 100, "predictor": p,
                           "target": "abs", "protocol": "all", "metric": "acc", "seed": 0,
                           "perm_p": pp} for p, pp in (("repsim", 0.001), ("probe_sae", 0.5),
                                                       ("repsim", 0.2))])
    both = correlation.assign_roles(pl.concat([_roles_table(), extra]), primary)
    n = base.height
    np.testing.assert_array_equal(both["holm_p"].to_numpy()[:n], base["holm_p"].to_numpy())
    # repsim's two rows are a family of two; the probe row a family of one
    assert both["holm_p"].to_numpy()[n:] == pytest.approx([0.002, 0.5, 0.2])
