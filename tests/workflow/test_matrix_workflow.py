"""End to end: the analysis across candidate SFT sets on the tiny project through the Snakemake
CLI. Two SFT sets predicted only (fine-tuning off: the predicted matrix and the decision table
from it), then fine-tuned with LoRA (the observed matrix, agreement and pooled validity), then a
third SFT set added to the finished run: only its own jobs and the cross-SFT reduction run, and
the first two sets' outputs are left as they were. The tables are checked against direct
computations from the per-SFT tables (numpy/scipy)."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import polars as pl
import pytest
from conftest import write_jsonl
from scipy import stats as sps
from workflow_helpers import planned_jobs, snakemake, tiny_config, write_config

from stsflow.jobs.matrix import TABLES
from stsflow.scores import pretraining_predictors

pytestmark = pytest.mark.slow

DOMAINS = ("law", "history", "physics")


def sft_set(name: str, n: int = 12) -> list[dict]:
    """An SFT set of its own character: the tiny model is random, so only the text differs."""
    templates = {
        "arith": ("What is {i} plus {j}?", "{i} + {j} = {s}. The answer is {s}.", "{s}"),
        "recall": ("Which river flows through city {i}?", "River {j} flows through it. The "
                   "answer is river {j}.", "river {j}"),
        "algebra": ("Solve x - {i} = {j} for x.", "x = {j} + {i} = {s}. The answer is {s}.",
                    "{s}"),
    }
    q, sol, ans = templates[name]
    return [{"id": f"{name}{i}", "question": q.format(i=i, j=i + 2, s=2 * i + 2),
             "solution": sol.format(i=i, j=i + 2, s=2 * i + 2),
             "answer": ans.format(i=i, j=i + 2, s=2 * i + 2)} for i in range(n)]


def add_sft(workdir, cfg: dict, name: str, target: str | None) -> None:
    write_jsonl(workdir / "data" / f"{name}.jsonl", sft_set(name))
    cfg["sft"][name] = {"source": {"local": {"path": f"data/{name}.jsonl"}}, "target": target}


@pytest.fixture(scope="module")
def predicted(tiny_model_dir, tmp_path_factory):
    """Two SFT sets, fine-tuning off: a prediction-only run."""
    workdir = tmp_path_factory.mktemp("matrix")
    cfg = tiny_config(workdir, tiny_model_dir, domains=DOMAINS, observed=False, finetune=True)
    cfg["finetune"]["enabled"] = False
    cfg["sft"]["arith"]["target"] = "physics"
    add_sft(workdir, cfg, "recall", "history")
    cfg["report"]["matrix"] = {"top_k": 2}
    write_config(workdir, cfg)
    snakemake(workdir, "--cores", "2")
    return workdir, cfg


@pytest.fixture(scope="module")
def tuned(predicted):
    """The same run with LoRA fine-tuning switched on."""
    workdir, cfg = predicted
    cfg = copy.deepcopy(cfg)
    cfg["finetune"]["enabled"] = True
    write_config(workdir, cfg)
    plan = planned_jobs(workdir)
    snakemake(workdir, "--cores", "2")
    return workdir, cfg, plan


def tables(workdir) -> dict[str, pl.DataFrame]:
    root = workdir / "results/tables/tiny/matrix"
    return {t: pl.read_parquet(root / f"{t}.parquet") for t in TABLES}


def site_rows(workdir, sft: str) -> pl.DataFrame:
    """The per-SFT STS table's rows at the matrix's site: layer 1, its own SAE, N 10 (the
    configured N closest to 100) and the lowest ICL seed."""
    sts = pl.read_parquet(workdir / f"results/tables/tiny/{sft}/sts.parquet")
    return sts.filter(pl.col("layer") == 1, pl.col("sae") == "main", pl.col("n_top") == 10,
                      pl.col("seed") == 0)


def test_prediction_only_computes_the_predicted_matrix_and_the_decision_from_it(predicted):
    workdir, cfg = predicted
    res = workdir / "results"
    assert not (res / "finetune").exists() and not (res / "eval").exists()
    t = tables(workdir)
    pred, decision = t["predicted"], t["decision"]
    n_norm = pred["normalisation"].n_unique()
    assert pred.height == len(pretraining_predictors()) * n_norm * 2 * len(DOMAINS)
    assert pred["sft"].unique(maintain_order=True).to_list() == ["arith", "recall"]
    assert t["observed"].height == 0 and t["pooled"].height == 0
    assert t["agreement"].height == 0
    # the decision table: every domain's two candidates ranked by prediction, no observation
    assert decision.height == 2 * len(DOMAINS)
    assert decision["delta"].null_count() == decision.height
    assert sorted(decision["predicted_rank"].to_list()) == [1, 1, 1, 2, 2, 2]
    # own targets flagged as configured
    own = {(r["sft"], r["domain"]) for r in decision.filter("own_target").iter_rows(named=True)}
    assert own == {("arith", "physics"), ("recall", "history")}
    assert set(t["at_risk"].group_by("sft").len()["len"].to_list()) == {2}  # top_k
    page = (res / "reports/tiny/matrix/summary.md").read_text()
    assert "## Decision table" in page and "a prediction only" in page
    assert (res / "reports/tiny/matrix/matrix_heatmaps.png").read_bytes()[:4] == b"\x89PNG"
    # a prediction-only run has no per-SFT report (nothing observed to correlate with)
    assert not (res / "reports/tiny/arith/summary.html").exists()


def test_predicted_matrix_is_the_per_sft_tables_normalised(predicted):
    """Raw scores are the per-SFT STS tables' values at the site; zscore, rank and none are
    recomputed here from those values (numpy/scipy, float64)."""
    workdir, _ = predicted
    pred = tables(workdir)["predicted"]
    for sft in ("arith", "recall"):
        rows = site_rows(workdir, sft)
        assert rows.height == len(DOMAINS)
        for name in ("sts_icl", "sts_act", "repsim"):
            x = {r["domain"]: r[name] for r in rows.iter_rows(named=True)}
            v = np.array([x[d] for d in DOMAINS], dtype=np.float64)
            expect = {"none": v, "zscore": (v - v.mean()) / v.std(ddof=1),
                      "rank": (sps.rankdata(v) - 1) / (len(v) - 1)}
            for norm, want in expect.items():
                got = pred.filter(pl.col("sft") == sft, pl.col("predictor") == name,
                                  pl.col("normalisation") == norm)
                got = dict(zip(got["domain"], got["score"]))
                assert [got[d] for d in DOMAINS] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_fine_tuning_switched_on_adds_only_validation_jobs(tuned):
    """The prediction stays: fine-tuning, the evaluations, the tuned models' extractions (the
    true shift) and what reads them; per SFT set, the tables, cards and report; the matrix."""
    per_set = dict(finetune=1, evaluate_tuned=len(DOMAINS), extract=1, true_shift=1,
                   sts=2 * len(DOMAINS), oracle_table=1, observed=1, overlap=1, coverage=1,
                   cards=1, report=1)
    want = Counter({k: 2 * v for k, v in per_set.items()})
    want.update(evaluate_base=len(DOMAINS), matrix=1, manifest=1, all=1)
    assert tuned[2] == want


def test_observed_matrix_decision_and_pooled_against_the_per_sft_tables(tuned):
    workdir, _, _ = tuned
    t = tables(workdir)
    obs = t["observed"]
    for sft in ("arith", "recall"):
        per = pl.read_parquet(workdir / f"results/tables/tiny/{sft}/observed.parquet")
        got = obs.filter(pl.col("sft") == sft).sort("metric", "domain")
        want = per.sort("metric", "domain")
        assert got["delta"].to_list() == pytest.approx(want["delta"].to_list(), abs=0)
    # the decision table at the declared site: nll (evaluate.metrics' first), target abs
    dec = t["decision"]
    assert set(dec["metric"]) == {"nll"} and dec.height == 2 * len(DOMAINS)
    scores = {}
    for sft in ("arith", "recall"):
        v = site_rows(workdir, sft).select("domain", "sts_icl").rows()
        x = np.array([dict(v)[d] for d in DOMAINS])
        scores.update({(sft, d): z for d, z in zip(DOMAINS, (x - x.mean()) / x.std(ddof=1))})
    nll = obs.filter(pl.col("metric") == "nll")
    harm = {(r["sft"], r["domain"]): abs(r["delta"]) for r in nll.iter_rows(named=True)}
    for d in DOMAINS:
        g = dec.filter(pl.col("domain") == d)
        most_pred = max(("arith", "recall"), key=lambda s: scores[(s, d)])
        most_obs = max(("arith", "recall"), key=lambda s: harm[(s, d)])
        assert g.filter(pl.col("predicted_rank") == 1)["sft"].item() == most_pred
        assert g.filter(pl.col("observed_rank") == 1)["sft"].item() == most_obs
    agr = t["agreement"]
    assert agr.height == len(DOMAINS) and set(agr["k"]) == {2}
    for r in agr.iter_rows(named=True):
        d = r["domain"]
        tau = sps.kendalltau([scores[(s, d)] for s in ("arith", "recall")],
                             [harm[(s, d)] for s in ("arith", "recall")]).statistic
        assert r["kendall_tau"] == pytest.approx(tau, abs=1e-12)
    # pooled: the primary over all 6 cells, Pearson recomputed directly
    prim = t["pooled"].filter(pl.col("role") == "primary")
    assert prim.height == 1 and prim["n_cells"].item() == 6
    cells = [(s, d) for s in ("arith", "recall") for d in DOMAINS]
    r = sps.pearsonr([scores[c] for c in cells], [harm[c] for c in cells]).statistic
    assert prim["pearson"].item() == pytest.approx(r, abs=1e-12)
    page = (workdir / "results/reports/tiny/matrix/summary.md").read_text()
    assert "Primary (method=lora seed=0 metric=nll)" in page


def test_a_finished_run_reruns_nothing(tuned):
    assert planned_jobs(tuned[0]) == Counter()


def test_adding_an_sft_set_schedules_only_its_jobs_and_the_matrix(tuned):
    """One more candidate on a finished run: its data, extractions (plain, ICL, the tuned
    model's), gradients, shifts, scores, fine-tuning and tuned evaluations, its per-SFT tables,
    cards and report; the matrix; the manifest. Nothing of the other two SFT sets, no base
    evaluation. Then it runs, and the other sets' files are not rewritten."""
    workdir, cfg, _ = tuned
    cfg = copy.deepcopy(cfg)
    add_sft(workdir, cfg, "algebra", None)
    write_config(workdir, cfg)
    per_set = dict(materialize_sft=1, extract=3, gradients=1, shift=1, true_shift=1,
                   sts=2 * 2 * len(DOMAINS), sts_table=1, oracle_table=1, finetune=1,
                   evaluate_tuned=len(DOMAINS), observed=1, overlap=1, coverage=1, cards=1,
                   report=1)
    assert planned_jobs(workdir) == Counter(per_set, matrix=1, manifest=1, all=1)
    res = workdir / "results"
    kept = [p for p in res.rglob("*") if p.is_file() and "/logs/" not in str(p)
            and "/matrix/" not in str(p) and p.name != "manifest.json"]
    before = {p: p.stat().st_mtime_ns for p in kept}
    snakemake(workdir, "--cores", "2")
    assert {p: p.stat().st_mtime_ns for p in kept} == before
    pred = pl.read_parquet(res / "tables/tiny/matrix/predicted.parquet")
    # the shared order: the validated config's (its names sorted)
    assert pred["sft"].unique(maintain_order=True).to_list() == ["algebra", "arith", "recall"]
    dec = pl.read_parquet(res / "tables/tiny/matrix/decision.parquet")
    assert dec.height == 3 * len(DOMAINS)
    assert planned_jobs(workdir) == Counter()
