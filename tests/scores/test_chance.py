"""Comparisons with chance that compare like with like: D_N without zero-shift padding or
index tie-breaks, the overlap of two D_N beside its hypergeometric chance level and exact
permutation p (scipy.stats.hypergeom, and a Monte Carlo permutation as a second reference), the
overlap table through its job, and the random-dimension control drawn among live dimensions."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import hypergeom

from stsflow.features.stats import Stats
from stsflow.io.files import write_parquet
from stsflow.scores.controls import live_dims, random_dim_scores
from stsflow.scores.registry import ScoreInputs
from stsflow.scores.shift import overlap_stats, ranked, shifted_dims


def table(values):
    v = np.asarray(values, dtype=np.float64)
    return ranked(v, np.zeros_like(v))


def brute_dn(values, n):
    """D_N by its definition: j moved, and at most N dimensions have a shift ≥ shift_j."""
    return sorted(j for j, v in enumerate(values)
                  if v > 0 and sum(w >= v for w in values) <= n)


def test_dn_holds_only_moved_dimensions_and_no_tie_broken_by_index():
    values = [0.0, 5.0, 0.0, 3.0, 3.0, 1.0, 0.0, 0.0]
    t = table(values)
    assert list(shifted_dims(t, 2)) == [1]  # 3.0 ties 3.0 across the cut: neither is in
    assert list(shifted_dims(t, 3)) == [1, 3, 4]
    assert list(shifted_dims(t, 6)) == [1, 3, 4, 5]  # 4 moved: no zero-shift padding
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = rng.integers(0, 4, size=12).astype(float)  # many ties and zeros
        for n in (1, 3, 5, 12):
            assert list(shifted_dims(table(v), n)) == brute_dn(list(v), n)


def test_overlap_chance_and_p_against_scipy_and_a_permutation():
    """Null: D_N a random set of its size among the predicted moving dimensions."""
    rng = np.random.default_rng(1)
    width, n = 60, 8
    pred = np.where(rng.random(width) < 0.5, rng.random(width), 0.0)  # ~30 moving
    true = np.where(rng.random(width) < 0.7, rng.random(width), 0.0)
    true[np.argsort(-pred)[:5]] += 2.0  # the prediction finds some of the truth
    got = overlap_stats(table(pred), table(true), n)
    moving = np.flatnonzero(pred > 0)
    p_set, t_set = set(np.argsort(-pred)[:n]), set(np.argsort(-true)[:n])
    hits = len(p_set & t_set)
    could = len(t_set & set(moving))
    assert got["overlap"] == hits / n and got["n_effective"] == n
    assert got["n_moving_predicted"] == len(moving) and got["n_moving_true"] == (true > 0).sum()
    assert got["width"] == width and got["n_over_width"] == n / width
    assert got["overlap_chance"] == pytest.approx(
        hypergeom.mean(len(moving), could, n) / n)
    assert got["overlap_p"] == pytest.approx(hypergeom.sf(hits - 1, len(moving), could, n))
    # the same p from shuffling the predicted shift among the moving dimensions
    draws = np.array([len(set(rng.choice(moving, n, replace=False)) & t_set)
                      for _ in range(20000)])
    assert np.mean(draws >= hits) == pytest.approx(got["overlap_p"], abs=0.01)
    assert np.mean(draws) / n == pytest.approx(got["overlap_chance"], abs=0.01)
    assert got["overlap_p"] < 0.05 and got["overlap_note"] is None


def test_overlap_of_an_identity_pair_is_undefined_and_short_sets_are_marked():
    pred = table([3.0, 2.0, 1.0, 0.5, 0.0, 0.0])
    same = overlap_stats(pred, table(np.zeros(6)), 2)
    assert math.isnan(same["overlap"]) and math.isnan(same["overlap_p"])
    assert "true shift is exactly zero" in same["overlap_note"]
    assert same["n_moving_true"] == 0 and same["n_effective"] == 0
    # N = 5 > the 4 predicted and 2 true moving dimensions: never padded, marked
    short = overlap_stats(pred, table([0.0, 1.0, 0.0, 2.0, 0.0, 0.0]), 5)
    assert short["n_effective"] == 2 and short["overlap"] == 2 / 5
    assert "predicted D_N holds 4" in short["overlap_note"]
    assert "true D_N holds 2" in short["overlap_note"]
    # every moving dimension taken: no ranking left to test, p = 1, chance = the overlap
    assert short["overlap_p"] == 1.0 and short["overlap_chance"] == short["overlap"]


def test_the_overlap_job_writes_the_chance_columns(tmp_path):
    from stsflow.jobs.reduce import OVERLAP_KEYS, overlap_table
    from stsflow.scores.shift import OVERLAP_COLUMNS

    rng = np.random.default_rng(3)
    pred = np.where(rng.random(40) < 0.5, rng.random(40), 0.0)
    files = {}
    for name, v in (("pred", pred), ("lora", rng.random(40)), ("same", np.zeros(40))):
        files[name] = tmp_path / f"{name}.parquet"
        write_parquet(table(v), files[name])
    overlap_table("m", "s", {(1, "main", 0): files["pred"]},
                  {("lora", 0, 1, "main"): files["lora"],
                   ("posthoc_same", 0, 1, "main"): files["same"]}, [5, 30], tmp_path / "o.parquet")
    df = pl.read_parquet(tmp_path / "o.parquet")
    assert df.columns == [*OVERLAP_KEYS, *OVERLAP_COLUMNS]
    lora = df.filter(pl.col("method") == "lora", pl.col("n_top") == 5).row(0, named=True)
    want = overlap_stats(table(pred), table(pl.read_parquet(files["lora"])["shift"].to_numpy()),
                         5)
    assert {k: lora[k] for k in want} == want
    m = int((pred > 0).sum())
    at30 = df.filter(pl.col("method") == "lora", pl.col("n_top") == 30).row(0, named=True)
    assert at30["n_effective"] == min(30, m) and at30["n_moving_predicted"] == m
    same = df.filter(pl.col("method") == "posthoc_same")
    assert same["overlap"].is_nan().all() and same["overlap_note"].str.contains("zero").all()


def stats(width, nnz, n_tokens=10, seed=0):
    rng = np.random.default_rng(seed)
    s = Stats(width, n_tokens=n_tokens, sum=rng.random(width), sumsq=rng.random(width),
              nnz=np.asarray(nnz, dtype=np.float64))
    s.diff_sum, s.diff_sumsq = rng.random(width), rng.random(width)
    return s


def test_random_sets_are_drawn_among_live_dimensions_as_large_as_dn():
    """A sparse SAE: 200 dimensions, 12 fire on the SFT queries and 3 more move only with the
    demonstrations. Every draw holds live dimensions only, as many as D_N, the same draws for
    two domains; n_live says how many there were."""
    width = 200
    nnz = np.zeros(width)
    nnz[np.arange(0, 120, 10)] = 4
    shift = np.zeros(width)
    shift[[0, 10, 20, 30, 55, 77, 199]] = [9, 8, 7, 6, 5, 4, 3]  # 55, 77, 199 fire only in ICL
    live = set(np.flatnonzero(nnz)) | {55, 77, 199}
    assert set(live_dims(stats(width, nnz), table(shift))) == live
    out = {}
    for domain_seed in (1, 2):
        x = ScoreInputs(n_top=5, shifts={"sae": table(shift)},
                        plain={"sae": stats(width, nnz, seed=domain_seed)},
                        icl={"sae": stats(width, nnz, seed=domain_seed + 10)},
                        sft_plain=stats(width, nnz), control_seed=4)
        got = random_dim_scores(x, draws=50)
        assert got["n_live"] == 15 and len(got["rand_act"]) == 50
        out[domain_seed] = (x, got)
    from stsflow.scores.controls import random_dim_sets

    sets = random_dim_sets(np.array(sorted(live)), 5, 50, 4, 5)
    assert all(len(s) == 5 and set(s) <= live for s in sets)
    for x, got in out.values():  # the scores are those of these sets, on each domain's data
        np.testing.assert_allclose(got["rand_act"], [x.plain["sae"].sum[s].sum() / 10
                                                     for s in sets])
    # at N = 12 only 7 dimensions moved: D_N holds 7, and so does every draw
    x = ScoreInputs(n_top=12, shifts={"sae": table(shift)}, plain={"sae": stats(width, nnz)},
                    icl={"sae": stats(width, nnz)}, sft_plain=stats(width, nnz))
    assert len(x.dims("sae")) == 7
    got = random_dim_scores(x, draws=3)
    sets = random_dim_sets(np.array(sorted(live)), 7, 3, 0, 12)
    assert all(len(s) == 7 for s in sets)
    np.testing.assert_allclose(got["rand_act"], [x.plain["sae"].sum[s].sum() / 10 for s in sets])
    with pytest.raises(ValueError, match="SFT set's plain statistics"):
        random_dim_scores(ScoreInputs(n_top=5, shifts={"sae": table(shift)}, plain={}, icl={}),
                          draws=2)
