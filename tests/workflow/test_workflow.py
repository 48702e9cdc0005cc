"""End to end: the workflow on a tiny project through the Snakemake CLI, reruns, incremental
scheduling, reproducibility and the manifest."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from collections import Counter

import polars as pl
import pytest
from conftest import REPO, domain_records, write_jsonl
from workflow_helpers import executed_jobs, planned_jobs, snakemake, tiny_config, write_config

from stsflow.analysis.correlation import STAT_COLUMNS
from stsflow.io.files import read_metadata
from stsflow.io.manifest import verify
from stsflow.jobs.reduce import STS_COLUMNS
from stsflow.scores import PREDICTORS, pretraining_predictors

pytestmark = pytest.mark.slow
AGGREGATES = {"sts_table": 1, "report": 1, "manifest": 1, "all": 1}
# the coverage table reads each corpus's plain run at the first layer: a domain edit reruns it,
# a new layer or N does not
WITH_COVERAGE = dict(AGGREGATES, coverage=1)
# the feature cards of a (layer, SAE, seed) read the plain shards of every corpus: a domain edit
# reruns them (as the report), a new N or predictor does not
WITH_CARDS = dict(WITH_COVERAGE, cards=1)


@pytest.fixture(scope="module")
def project(tiny_model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("project")
    cfg = tiny_config(workdir, tiny_model_dir)
    write_config(workdir, cfg)
    snakemake(workdir, "--cores", "2")
    return workdir, cfg


@pytest.fixture
def edit(project):
    """Write a modified config for one test and put the original back afterwards."""
    workdir, cfg = project

    def apply(fn):
        new = copy.deepcopy(cfg)
        fn(new)
        write_config(workdir, new)
    yield apply
    write_config(workdir, cfg)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_produces_tables_report_and_manifest(project):
    workdir, _ = project
    res = workdir / "results"
    sts = pl.read_parquet(res / "tables/tiny/arith/sts.parquet")
    assert sts.columns[: len(STS_COLUMNS)] == STS_COLUMNS
    assert sts.height == 3 * 2  # domains x N
    assert (sts["n_tokens"] > 0).all() and (sts["sts_act"] > 0).all()
    assert pl.read_csv(res / "tables/tiny/arith/sts.csv").height == sts.height
    corr = pl.read_parquet(res / "reports/tiny/arith/correlations.parquet")
    assert {"model", "sft", "layer", "n_top", "predictor", "target", "protocol",
            "metric"} <= set(corr.columns) and set(STAT_COLUMNS) <= set(corr.columns)
    assert set(corr["predictor"]) == set(pretraining_predictors())  # the panel, one row set each
    assert {"rand_act", "rand_icl"} <= set(sts.columns)
    assert sts["rand_icl"].list.len().unique().to_list() == [20]  # sts.random_draws
    html = (res / "reports/tiny/arith/summary.html").read_text()
    assert "data:image/png;base64" in html and "Predictor panel" in html
    cmp = pl.read_parquet(res / "reports/tiny/arith/comparison.parquet")
    assert set(cmp["predictor"]) == set(pretraining_predictors()) | {"sts_icl_randdims",
                                                                    "sts_act_randdims"}
    assert (res / "reports/tiny/arith/forest.png").stat().st_size > 1000
    cards = pl.read_parquet(res / "cards/tiny/L1/main/arith/s0.parquet")
    assert set(cards["set"]) == {"predicted"} and cards.height == 20  # cards.n_top, no tuning
    assert cards["contexts"].list.len().min() > 0 and cards["promotes"].list.len().min() == 8
    assert html.count('<tr class="card"><td>predicted</td>') == cards.height
    assert verify(res) == []


def test_report_renders_in_a_real_browser(project, tmp_path):
    """The workflow's own summary in headless Chromium: no console message, every section of the
    contents non-empty, the cards' script ran; the screenshot is kept with the test's files."""
    from workflow_helpers import render_in_browser, report_sections

    page = project[0] / "results/reports/tiny/arith/summary.html"
    dom, console = render_in_browser(page, tmp_path / "summary.png")
    assert console == []
    found = report_sections(dom)
    assert found["links"] == list(found["sections"])
    for s in found["sections"].values():
        assert s["text"] + s["img"] + s["rows"] > 0, f"empty section {s['title']}"
    assert dom.count('<tr class="card">') == 20
    assert '<input id="cards-filter" type="search" placeholder' in dom


def test_unchanged_rerun_does_nothing(project):
    assert planned_jobs(project[0]) == Counter()


def test_adding_a_domain_schedules_only_its_jobs(project, edit):
    workdir, _ = project
    write_jsonl(workdir / "data/biology.test.jsonl", domain_records("biology", 5))
    write_jsonl(workdir / "data/biology.demos.jsonl", domain_records("biology", 2, offset=50))
    edit(lambda c: c["domains"].update(biology={
        "test": {"local": {"path": "data/biology.test.jsonl"}},
        "demos": {"local": {"path": "data/biology.demos.jsonl"}}}))
    assert planned_jobs(workdir) == Counter(materialize_domain=1, extract=2, gradients=1, sts=2,
                                            **WITH_CARDS)


def test_adding_a_predictor_reruns_only_the_scores(project, tmp_path):
    """A predictor registered by a plugin (here: sitecustomize) changes the sts rule's params:
    every score is recomputed from the statistics on disk, no extraction or shift reruns."""
    (tmp_path / "sitecustomize.py").write_text(
        "from stsflow.scores import register_predictor\n"
        "register_predictor('const', family='similarity', oracle=False, about='test')("
        "lambda x: 1.0)\n")
    path = os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])
    assert planned_jobs(project[0], env={"PYTHONPATH": path}) == Counter(sts=6, **AGGREGATES)


def test_adding_a_layer_schedules_only_that_layer(project, edit):
    workdir, cfg = project
    edit(lambda c: c["models"]["tiny"]["layers"].update({2: cfg["models"]["tiny"]["layers"][1]}))
    # SAE, 2 SFT runs + 3 domains x 2 modes, the shift vector, 3 domains x 2 N.
    assert planned_jobs(workdir) == Counter(prepare_sae=1, extract=8, shift=1, sts=6, cards=1,
                                            **AGGREGATES)


def test_adding_a_sweep_sae_schedules_only_its_jobs(project, edit):
    """A second SAE on a layer: its preparation, one encode job per extraction of the layer (the
    kept residuals, no model run), its shift and scores; nothing of the layer's own SAE reruns."""
    workdir, cfg = project
    sae = copy.deepcopy(cfg["models"]["tiny"]["layers"][1]["sae"])
    sae["train"]["k"] = 2
    edit(lambda c: c["models"]["tiny"]["layers"][1].update(sweep=[dict(sae, name="k2")]))
    # SAE, 2 SFT runs + 3 domains x 2 modes, the shift vector, 3 domains x 2 N.
    assert planned_jobs(workdir) == Counter(prepare_sae=1, encode=8, shift=1, sts=6, cards=1,
                                            **AGGREGATES)
    # a sweep is keyed by names, not positions: a second SAE put first adds only its jobs too
    k3 = dict(sae, name="k3", train=dict(sae["train"], k=3))
    edit(lambda c: c["models"]["tiny"]["layers"][1].update(sweep=[k3, dict(sae, name="k2")]))
    assert planned_jobs(workdir) == Counter(prepare_sae=2, encode=16, shift=2, sts=12, cards=2,
                                            **AGGREGATES)


def test_adding_an_n_value_schedules_only_its_scores(project, edit):
    edit(lambda c: c["sts"].update(n_top=[5, 10, 7]))
    assert planned_jobs(project[0]) == Counter(sts=3, **AGGREGATES)


def test_changing_one_domain_reruns_only_that_domain(project, edit):
    edit(lambda c: c["domains"]["law"].update(max_items=4))
    assert planned_jobs(project[0]) == Counter(materialize_domain=1, extract=2, gradients=1,
                                               sts=2, **WITH_CARDS)


def test_two_clean_runs_give_identical_tables(project, tiny_model_dir, tmp_path):
    workdir, cfg = project
    shutil.copytree(workdir / "data", tmp_path / "data")
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "--cores", "2")
    for rel in ("tables/tiny/arith/sts.parquet", "tables/tiny/arith/sts.csv",
                "reports/tiny/arith/correlations.parquet"):
        assert sha(workdir / "results" / rel) == sha(tmp_path / "results" / rel), rel


def test_verify_reports_tampering(project, tmp_path):
    res = tmp_path / "results"
    shutil.copytree(project[0] / "results", res)
    csv = res / "tables/tiny/arith/sts.csv"
    csv.write_text(csv.read_text().replace("law", "LAW", 1))
    (res / "reports/tiny/arith/scatter_sts_act.png").unlink()
    (res / "extra.txt").write_text("x")
    problems = verify(res)
    assert "modified  tables/tiny/arith/sts.csv" in problems
    assert "missing   reports/tiny/arith/scatter_sts_act.png" in problems
    assert "unlisted  extra.txt" in problems


def test_validation_loop_end_to_end(tiny_model_dir, tmp_path):
    """Fine-tune (LoRA), evaluate before/after, observed Δ with CIs, true shift, oracle STS,
    overlap, and a report that correlates all of it."""
    cfg = tiny_config(tmp_path, tiny_model_dir, observed=False, finetune=True)
    # a sweep: a second SAE of the layer (k = 2), encoded from the residuals the layer's kept
    layer = cfg["models"]["tiny"]["layers"][1]
    layer["sweep"] = [{"name": "k2", "train": dict(layer["sae"]["train"], k=2)}]
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "--cores", "2")
    tables = tmp_path / "results/tables/tiny/arith"
    observed = pl.read_parquet(tables / "observed.parquet")
    assert observed.columns == ["model", "sft", "method", "seed", "domain", "metric", "before",
                                "after", "delta", "abs_delta", "ci_low", "ci_high", "delta_se",
                                "n_items"]
    assert set(observed["metric"]) == {"nll", "option_loglik"} and observed.height == 3 * 2
    assert ((observed["ci_low"] <= observed["delta"]) & (observed["delta"] <= observed["ci_high"])).all()
    assert (observed["delta"] - (observed["after"] - observed["before"])).abs().max() < 1e-12
    overlap = pl.read_parquet(tables / "overlap.parquet")
    assert overlap.columns == ["model", "sft", "method", "seed", "layer", "sae", "n_top",
                               "width", "n_over_width", "n_moving_predicted", "n_moving_true",
                               "n_effective", "overlap", "overlap_chance", "overlap_p",
                               "overlap_note"]
    assert overlap.height == 2 * 2 and overlap["overlap"].is_between(0, 1).all()
    assert set(overlap["sae"]) == {"main", "k2"}
    sts = pl.read_parquet(tables / "sts.parquet")
    assert sts.group_by("sae").len().sort("sae").rows() == [("k2", 6), ("main", 6)]
    oracle = pl.read_parquet(tables / "sts_oracle.parquet")
    assert {"sts_act_oracle", "sts_icl_oracle", "sts_sq_oracle", "method", "seed"} <= set(oracle.columns)
    corr = pl.read_parquet(tmp_path / "results/reports/tiny/arith/correlations.parquet")
    assert {"sts_act", "sts_act_oracle"} <= set(corr["predictor"])
    assert set(corr["sae"]) == {"main", "k2"}
    # the primary analysis is the layer's own SAE; the sweep SAE's rows are exploratory
    primary = corr.filter(pl.col("role") == "primary")
    assert primary.height == 1 and primary["sae"].to_list() == ["main"]
    assert oracle.filter(pl.col("sae") == "k2").height == 6
    # before/after-SFT similarity: on the oracle rows only, the same for both SAEs of a layer
    assert "before_after" not in sts.columns
    ba = oracle.select("sae", "n_top", "domain", "before_after_oracle")
    assert ba["before_after_oracle"].is_between(-1, 1).all()
    assert ba.group_by("domain").agg(pl.col("before_after_oracle").n_unique())[
        "before_after_oracle"].to_list() == [1] * 3
    cmp = pl.read_parquet(tmp_path / "results/reports/tiny/arith/comparison.parquet")
    post = set(cmp.filter(pl.col("post_training"))["predictor"])
    assert post == {f"{p}_oracle" for p in PREDICTORS if PREDICTORS[p].oracle}
    assert set(cmp["method"]) == {"lora"} and cmp["best_baseline"].sum() <= 1
    assert set(corr["metric"]) == {"nll", "option_loglik"} and set(corr["method"]) == {"lora"}
    history = pl.read_parquet(tmp_path / "results/finetune/tiny/arith/lora-s0.history.parquet")
    assert history.height >= 1 and history["loss"].is_finite().all()
    assert "Overlap of predicted and true" in (tmp_path / "results/reports/tiny/arith/summary.md").read_text()
    assert "Prediction and true shift, run by run" in (
        tmp_path / "results/reports/tiny/arith/summary.md").read_text()
    # the rules' shards: the tuned model on the plain input (no demonstrations), ICL with t of them
    acts = tmp_path / "results/acts/tiny/L1/main"
    meta = {m: read_metadata(acts / f"sft/arith/{m}.parquet") for m in ("plain", "icl-s0",
                                                                        "tuned-lora-s0")}
    assert meta["tuned-lora-s0"]["prefix_tokens"] == meta["plain"]["prefix_tokens"]
    assert meta["tuned-lora-s0"]["demonstrations"] == [] and meta["plain"]["demonstrations"] == []
    assert meta["tuned-lora-s0"]["model"]["kind"] == "checkpoint"
    assert meta["tuned-lora-s0"]["model"]["method"] == "lora"
    assert meta["plain"]["model"]["kind"] == meta["icl-s0"]["model"]["kind"] == "local"
    assert len(meta["icl-s0"]["demonstrations"]) == 2
    assert meta["icl-s0"]["prefix_tokens"] > meta["plain"]["prefix_tokens"]
    law = read_metadata(acts / "domain/law/icl.parquet")
    assert len(law["demonstrations"]) == 2 and law["mode"] == "icl"
    coverage = pl.read_parquet(tables / "coverage.parquet")
    assert set(coverage["step"]) == {"extraction", "finetune lora-s0"}
    ext = coverage.filter(pl.col("step") == "extraction")
    assert sorted(ext.select("corpus", "mode").rows()) == [  # every run where a context is
        ("arith", "icl-s0"), ("arith", "plain"), *[(d, m) for d in ("history", "law", "physics")
                                                   for m in ("icl", "plain")]]
    assert (ext["n_context_overflow"] == 0).all() and ext["context_limit"].is_not_null().all()
    assert coverage["share_truncated"].is_between(0, 1).all()
    # the tuned run saw the base plain run's prompt, token for token
    assert meta["tuned-lora-s0"]["prefix_sha256"] == meta["plain"]["prefix_sha256"]
    assert corr.filter(pl.col("role") == "primary")["method"].unique().to_list() == ["lora"]
    overlap = pl.read_parquet(tables / "overlap.parquet")
    assert overlap["overlap_chance"].is_not_null().all() and (overlap["width"] > 0).all()
    assert pl.read_parquet(tables / "sts.parquet")["n_live"].min() > 0
    # the sweep SAE's shards: the same queries and runs as the layer's own, its own SAE
    for m in ("plain", "icl-s0", "tuned-lora-s0"):
        sweep = read_metadata(tmp_path / f"results/acts/tiny/L1/k2/sft/arith/{m}.parquet")
        assert sweep["residuals"] == "kept" and sweep["sae"]["train"]["k"] == 2
        assert sweep["n_tokens"] == meta[m]["n_tokens"] and sweep["model"] == meta[m]["model"]
    summary = (tmp_path / "results/reports/tiny/arith/summary.md").read_text()
    assert "Coverage: queries used" in summary and "SAE quality on held-out tokens" in summary
    assert "Ablation: layer, SAE and N" in summary
    assert "sae_warnings" in summary
    # feature cards of the prediction and of the fine-tuned run, the overlap marked: a predicted
    # card is "also in" true-lora exactly when its dimension is in the true shift's top 20
    cards = pl.read_parquet(tmp_path / "results/cards/tiny/L1/main/arith/s0.parquet")
    assert cards.group_by("set").len().sort("set").rows() == [("predicted", 20),
                                                               ("true-lora", 20)]
    true = pl.read_parquet(tmp_path / "results/shift/tiny/L1/main/arith/true-lora-s0.parquet")
    true_top = set(true.filter(pl.col("rank") <= 20)["dim"].to_list())
    for r in cards.filter(pl.col("set") == "predicted").iter_rows(named=True):
        assert ("true-lora" in r["also_in"]) == (r["dim"] in true_top)
    assert "Feature cards: what moved" in summary
    manifest = json.loads((tmp_path / "results/manifest.json").read_text())
    assert set(manifest["saes"]) == {"tiny/L1/main", "tiny/L1/k2"}
    assert manifest["saes"]["tiny/L1/k2"]["train"]["k"] == 2
    assert verify(tmp_path / "results") == []
    # the generate metric's engine: written out at its defaults, it reruns nothing (the rules
    # pass it only when it does something); generate added, through lm-evaluation-harness, the
    # evaluations rerun and what reads them, not the fine-tuning or the extractions
    cfg["evaluate"] |= {"generate_backend": "builtin", "lm_eval_args": {}}
    write_config(tmp_path, cfg)
    assert planned_jobs(tmp_path) == Counter()
    cfg["evaluate"] |= {"metrics": ["nll", "option_loglik", "generate"], "k_shot": 1,
                        "max_new_tokens": 4, "generate_backend": "lm_eval_hf"}
    write_config(tmp_path, cfg)
    plan = planned_jobs(tmp_path)
    assert (plan["evaluate_base"], plan["evaluate_tuned"], plan["observed"]) == (3, 3, 1)
    assert not {"finetune", "extract", "encode", "shift"} & set(plan)
    snakemake(tmp_path, "--cores", "2")
    observed = pl.read_parquet(tables / "observed.parquet")
    assert set(observed["metric"]) == {"nll", "option_loglik", "generate"}
    scores = pl.read_parquet(tmp_path / "results/eval/tiny/base/law.parquet")
    generated = scores.filter(pl.col("metric") == "generate")["detail"].to_list()
    assert len(generated) == 5 and {json.loads(d)["engine"] for d in generated} == {"lm_eval_hf"}


def test_selective_finetuning_end_to_end(tiny_model_dir, tmp_path):
    """finetune.methods [lora, sae_select] with top-K and random K: the maps train on the top-K
    of the predicted shift (or K drawn with the seed), every domain is evaluated, the true shift
    is extracted through the maps, the report compares the three runs; a new K adds only its
    own runs' jobs."""
    import pyarrow.parquet as pq

    from stsflow.finetune import selective
    from stsflow.finetune.checkpoint import read_checkpoint_meta

    cfg = tiny_config(tmp_path, tiny_model_dir, observed=False, finetune=True)
    cfg["finetune"]["methods"] = ["lora", "sae_select"]
    cfg["finetune"]["sae_select"] = {"k": [4], "select": ["top", "random"]}
    cfg["sft"]["arith"]["target"] = "law"
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "--cores", "2")
    runs = ["lora", "sae_select-top-k4", "sae_select-random-k4"]
    ft = tmp_path / "results/finetune/tiny/arith"
    predicted = pq.read_table(tmp_path / "results/shift/tiny/L1/main/arith/s0.parquet")
    shift = predicted["shift"].to_numpy()
    top = sorted(sorted(range(len(shift)), key=lambda i: (-shift[i], i))[:4])
    metas = {r: read_checkpoint_meta(ft / f"{r}-s0") for r in runs}
    assert metas["sae_select-top-k4"]["dims"] == {"1": top}
    assert metas["sae_select-random-k4"]["dims"] == {
        "1": selective.choose_dims(predicted, 4, "random", seed=0, layer=1).tolist()}
    assert metas["sae_select-top-k4"]["n_trainable"] == 4 * 32
    assert metas["lora"]["n_trainable"] > 4 * 32
    observed = pl.read_parquet(tmp_path / "results/tables/tiny/arith/observed.parquet")
    assert sorted(set(observed["method"])) == sorted(runs) and observed.height == 3 * 3 * 2
    # the true shift through the maps: the tuned extraction loads the checkpoint with its maps
    acts = tmp_path / "results/acts/tiny/L1/main/sft/arith"
    meta = read_metadata(acts / "tuned-sae_select-top-k4-s0.parquet")
    assert meta["model"]["method"] == "sae_select-top-k4"
    true = pq.read_table(tmp_path / "results/shift/tiny/L1/main/arith/"
                         "true-sae_select-top-k4-s0.parquet")
    assert true["shift"].to_numpy().max() > 0
    methods = pl.read_parquet(tmp_path / "results/reports/tiny/arith/methods.parquet")
    assert methods.height == 3 * 2 and set(methods["target"]) == {"law"}
    for r in methods.iter_rows(named=True):
        obs = observed.filter((pl.col("method") == r["method"]) & (pl.col("metric") == r["metric"]))
        law = obs.filter(pl.col("domain") == "law").row(0, named=True)
        others = obs.filter(pl.col("domain") != "law")["delta"].to_list()
        assert (r["target_delta"], r["target_ci_low"]) == (law["delta"], law["ci_low"])
        assert r["others_mean"] == pytest.approx(sum(others) / 2, abs=1e-15)
        assert r["others_worst"] == min(others) and r["n_trainable"] == metas[r["method"]][
            "n_trainable"]
    summary = (tmp_path / "results/reports/tiny/arith/summary.md").read_text()
    assert "Fine-tuning methods side by side" in summary
    assert planned_jobs(tmp_path) == Counter()
    # a second K: its two runs' jobs only (nothing of the base model, the SAE or LoRA reruns)
    cfg["finetune"]["sae_select"]["k"] = [4, 8]
    write_config(tmp_path, cfg)
    planned = planned_jobs(tmp_path)
    assert planned["finetune"] == 2 and planned["evaluate_tuned"] == 2 * 3
    assert planned["extract"] == 2 and planned["true_shift"] == 2
    assert not {"evaluate_base", "prepare_sae", "prepare_model", "shift", "gradients"} & set(planned)


def acts_meta_is_run(workdir, method):
    """The tuned extraction's metadata names the run (method, seed, base), not a bare model."""
    meta = read_metadata(workdir / f"results/acts/tiny/L1/main/sft/arith/tuned-{method}-s0"
                                   ".parquet")["model"]
    return meta["method"] == method and meta["seed"] == 0 and meta["base"]["kind"] == "local"


def test_posthoc_pairs_end_to_end(tiny_model_dir, tmp_path):
    """Post-hoc pairs with no fine-tuning here: the base itself as the tuned model (zero true
    shift, zero Δ), a PEFT adapter and its merged save_pretrained copy (the same true shift and
    Δ); every pair evaluated on every domain, scored and correlated under posthoc_<label>; a new
    pair schedules only its own jobs."""
    import numpy as np
    import pyarrow.parquet as pq
    from conftest import saved_lora

    cfg = tiny_config(tmp_path, tiny_model_dir, observed=False)
    cfg["evaluate"] = {"metrics": ["nll", "option_loglik"], "batch_size": 4, "n_boot": 200}
    # a second SFT set with no pair, only Δ given: its report has no true-shift rows
    cfg["sft"]["other"] = cfg["sft"]["arith"]
    cfg["observed"] = [{"model": "tiny", "sft": "other", "metric": "given",
                        "deltas": {"law": -1.0, "history": 2.0, "physics": 0.5}}]
    adapter, merged = saved_lora(tiny_model_dir, tmp_path / "elsewhere")
    cfg["posthoc"] = {
        "same": {"model": "tiny", "sft": "arith", "tuned": {"local": {"path": str(tiny_model_dir)}}},
        "adapter": {"model": "tiny", "sft": "arith", "tuned": {"peft": {"path": str(adapter)}}},
        "merged": {"model": "tiny", "sft": "arith", "tuned": {"local": {"path": str(merged)}}},
    }
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "--cores", "2")
    shifts = tmp_path / "results/shift/tiny/L1/main/arith"
    true = {p: pq.read_table(shifts / f"true-posthoc_{p}-s0.parquet").to_pandas()
            for p in cfg["posthoc"]}
    assert (true["same"]["shift"] == 0).all() and (true["same"]["mean_diff"] == 0).all()
    assert true["adapter"]["shift"].max() > 0
    np.testing.assert_allclose(true["adapter"]["shift"], true["merged"]["shift"], rtol=1e-6,
                               atol=1e-12)
    # the tuned extraction loaded the adapter merged into the base, the copy in place
    acts = tmp_path / "results/acts/tiny/L1/main/sft/arith"
    meta = {p: read_metadata(acts / f"tuned-posthoc_{p}-s0.parquet")["model"] for p in true}
    assert meta["adapter"]["kind"] == "checkpoint" and meta["merged"]["kind"] == "local"
    tables = tmp_path / "results/tables/tiny/arith"
    observed = pl.read_parquet(tables / "observed.parquet")
    assert observed.height == 3 * 3 * 2
    by = {p: observed.filter(pl.col("method") == f"posthoc_{p}").sort("domain", "metric")
          for p in true}
    assert (by["same"]["delta"] == 0).all()
    assert by["adapter"]["delta"].to_list() == pytest.approx(by["merged"]["delta"].to_list(),
                                                             abs=1e-6)
    assert by["adapter"].filter(pl.col("metric") == "nll")["delta"].abs().min() > 0
    overlap = pl.read_parquet(tables / "overlap.parquet")
    assert sorted(set(overlap["method"])) == sorted(f"posthoc_{p}" for p in true)
    oracle = pl.read_parquet(tables / "sts_oracle.parquet")
    assert oracle.height == 3 * 2 * 3  # pairs x N x domains
    corr = pl.read_parquet(tmp_path / "results/reports/tiny/arith/correlations.parquet")
    assert set(corr["method"]) == {f"posthoc_{p}" for p in true}
    # the primary analysis is declared on one pair's Δ (the first by label, and evaluate.metrics'
    # first metric); the other pairs are exploratory
    primary = corr.filter(pl.col("role") == "primary")
    assert primary.height == 1 and set(primary["metric"]) == {"nll"}
    assert primary["method"].to_list() == ["posthoc_adapter"]
    # the identity pair's true shift is zero: no D_N^true, its overlap undefined and said why
    same = overlap.filter(pl.col("method") == "posthoc_same")
    assert same["overlap"].is_nan().all() and same["n_moving_true"].max() == 0
    assert same["overlap_note"].str.contains("exactly zero").all()
    # the SFT set without a pair: its report, with an empty true-shift scatter plot
    other = tmp_path / "results/reports/tiny/other"
    assert (other / "scatter_sts_act_oracle.png").stat().st_size > 0
    assert not (tmp_path / "results/tables/tiny/other/observed.parquet").exists()
    assert acts_meta_is_run(tmp_path, "posthoc_merged")
    history = read_metadata(tmp_path / "results/finetune/tiny/arith/posthoc_adapter-s0"
                                       ".history.parquet")
    assert history["imported"]["kind"] == "peft" and history["n_trainable"] is None
    assert planned_jobs(tmp_path) == Counter()
    # one more pair: its import, evaluations, tuned extraction and scores, and the gatherers
    cfg["posthoc"]["again"] = {"model": "tiny", "sft": "arith",
                               "tuned": {"local": {"path": str(merged)}}}
    write_config(tmp_path, cfg)
    planned = planned_jobs(tmp_path)
    assert planned["import_tuned"] == 1 and planned["evaluate_tuned"] == 3
    assert planned["extract"] == 1 and planned["true_shift"] == 1
    assert planned["sts"] == 2 * 3  # N x domains of its true shift
    assert not {"evaluate_base", "prepare_sae", "prepare_model", "shift", "gradients",
                "finetune"} & set(planned)


def test_grpo_run_end_to_end(tiny_model_dir, tmp_path):
    """finetune.methods [grpo]: RL through the rule (its recipe reaches the run, and only it),
    every domain evaluated, the true shift extracted through the adapter, and the report's
    "Prediction and true shift, run by run" row for it."""
    cfg = tiny_config(tmp_path, tiny_model_dir, observed=False, finetune=True)
    cfg["finetune"]["methods"] = ["grpo"]
    cfg["finetune"]["grpo"] = {"steps": 2, "prompts_per_step": 2, "group_size": 2,
                               "max_new_tokens": 8}
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "--cores", "2")
    history = pl.read_parquet(tmp_path / "results/finetune/tiny/arith/grpo-s0.history.parquet")
    assert history["step"].to_list() == [1, 2] and history["reward"].is_between(0, 1).all()
    meta = read_metadata(tmp_path / "results/finetune/tiny/arith/grpo-s0.history.parquet")
    assert meta["recipe"]["grpo"]["steps"] == 2 and meta["rl"]["n_prompts"] == 12
    observed = pl.read_parquet(tmp_path / "results/tables/tiny/arith/observed.parquet")
    assert set(observed["method"]) == {"grpo"} and observed.height == 3 * 2
    assert (tmp_path / "results/shift/tiny/L1/main/arith/true-grpo-s0.parquet").exists()
    summary = (tmp_path / "results/reports/tiny/arith/summary.md").read_text()
    assert "Prediction and true shift, run by run" in summary
    assert "| grpo | 0 |" in summary
    # the RL recipe is a parameter of grpo runs alone: adding LoRA plans LoRA's jobs only
    cfg["finetune"]["methods"] = ["grpo", "lora"]
    write_config(tmp_path, cfg)
    planned = planned_jobs(tmp_path)
    assert planned["finetune"] == 1 and planned["evaluate_tuned"] == 3


def test_sharded_full_finetune_through_the_rule(tiny_model_dir, tmp_path):
    """finetune.processes 2 on a CPU model: the full run goes to finetune_sharded (no GPU unit,
    two CPUs reserved per process), which starts two gloo ranks; the checkpoint says so. The count is
    a parameter of full runs alone: LoRA beside it is planned as one process's run."""
    from stsflow.finetune.checkpoint import read_checkpoint_meta

    cfg = tiny_config(tmp_path, tiny_model_dir, observed=False, finetune=True)
    cfg["models"]["tiny"]["device"] = "cpu"
    cfg["finetune"].update(methods=["full"], processes=2)
    write_config(tmp_path, cfg)
    dry = snakemake(tmp_path, "-n", "--cores", "4", "-p").stdout
    block = dry[dry.index("rule finetune_sharded:"):][:900]
    assert "gpu=0" in block and "threads: 4" in block
    snakemake(tmp_path, "--cores", "2", "results/finetune/tiny/arith/full-s0.history.parquet")
    meta = read_checkpoint_meta(tmp_path / "results/finetune/tiny/arith/full-s0")
    assert meta["processes"] == 2 and meta["recipe"]["processes"] == 2
    log = (tmp_path / "results/logs/finetune/tiny/arith/full-s0.log").read_text()
    assert "2 processes (FSDP)" in log and "step 3/3" in log
    cfg["finetune"]["methods"] = ["full", "lora"]
    write_config(tmp_path, cfg)
    planned = planned_jobs(tmp_path, "results/finetune/tiny/arith/lora-s0.history.parquet",
                           "results/finetune/tiny/arith/full-s0.history.parquet")
    assert planned == {"finetune": 1}  # LoRA's run; the sharded run stands


def mixture_project(tmp_path, tiny_model_dir, mixture, same_domains=False):
    """A tiny project with a data mixture over the pools of law and history (6 items each;
    physics, the SFT set's target, has none). ``same_domains``: law and history are the same
    items under one subject, so every score and every |Δ| of the two is the same."""
    cfg = tiny_config(tmp_path, tiny_model_dir, observed=False, finetune=True)
    for name in ("law", "history"):
        source = "law" if same_domains else name
        write_jsonl(tmp_path / f"data/{name}.pool.jsonl", domain_records(source, 6, offset=100))
        cfg["domains"][name]["pool"] = {"local": {"path": f"data/{name}.pool.jsonl"}}
        if same_domains:
            write_jsonl(tmp_path / f"data/{name}.test.jsonl", domain_records(source, 5))
            write_jsonl(tmp_path / f"data/{name}.demos.jsonl",
                        domain_records(source, 2, offset=50))
            cfg["domains"][name]["subject"] = "general knowledge"
    cfg["sft"]["arith"]["target"] = "physics"
    # the random tiny model seldom ends its turn within 8 tokens: its cut answers are kept
    cfg["mixture"] = {"enabled": True, "budget": 8, "max_new_tokens": 8, "keep_cut": True,
                      **mixture}
    write_config(tmp_path, cfg)
    return cfg


def allocations_made(tmp_path) -> dict[str, dict]:
    """Every mixture run's allocation file, by run."""
    from stsflow.mixture.allocation_file import read_allocation

    return {p.name.removesuffix("-s0.json"): read_allocation(p)
            for p in (tmp_path / "results/mixture/tiny/arith").glob("*.json")}


def test_data_mixture_end_to_end(tiny_model_dir, tmp_path):
    """mixture: with the paper's sts rule, a contrast rule and oracle on a tiny project: the
    pools are materialised (never a test item), the base model answers them once, each run's
    split is made before fine-tuning, the runs with a split of their own train on the SFT set
    plus their share of the replay and are evaluated on every domain, and the report compares
    the runs with the share of the target gain kept; a new strategy adds only its own jobs."""
    from stsflow.finetune.checkpoint import read_checkpoint_meta
    from stsflow.mixture.identical import identical_runs

    cfg = mixture_project(tmp_path, tiny_model_dir, {
        "strategies": ["sts", "oracle"], "allocations": ["proportional", "above_min"]})
    snakemake(tmp_path, "--cores", "2", timeout=2400)  # four fine-tunings, 12 evaluations
    replay = pl.read_parquet(tmp_path / "results/replay/tiny/law.parquet")
    assert replay.height == 6 and set(replay["finish"]) <= {"eos", "length"}
    assert read_metadata(tmp_path / "results/replay/tiny/law.parquet")["max_new_tokens"] == 8
    made = allocations_made(tmp_path)
    assert set(made) == {"lora-mix_sts", "lora-mix_sts_above_min", "lora-mix_oracle"}
    # the sts weights, under either rule, are the primary predictor's scores of the seed's
    # prediction: the contrast rule's run reads the scores too
    sts = pl.read_parquet(tmp_path / "results/tables/tiny/arith/sts.parquet")
    primary = sts.filter((pl.col("layer") == 1) & (pl.col("n_top") == 10) & (pl.col("seed") == 0))
    for run in ("lora-mix_sts", "lora-mix_sts_above_min"):
        for d in ("law", "history"):
            assert made[run]["values"][d] == primary.filter(pl.col("domain") == d)["sts_icl"][0]
    # above_min: every item to the higher score, capped at its 6 answers, 2 short; the paper's
    # rule gives both domains a share: two splits, two runs
    top = max(("law", "history"), key=lambda d: made["lora-mix_sts"]["values"][d])
    assert made["lora-mix_sts_above_min"]["counts"][top] == 6
    assert made["lora-mix_sts_above_min"]["n_short"] == 2
    assert min(made["lora-mix_sts"]["counts"].values()) > 0
    # the workflow trained exactly one run per distinct split (the plain run: no replay)
    groups = identical_runs({"lora": {}, **{run: a["counts"] for run, a in made.items()}})
    ft = tmp_path / "results/finetune/tiny/arith"
    assert {p.name for p in ft.glob("*-s0")} == {f"{g.trains}-s0" for g in groups}
    assert {"lora-mix_sts", "lora-mix_sts_above_min"} <= {g.trains for g in groups}
    plain = read_checkpoint_meta(ft / "lora-s0")
    for g in groups:
        if g.trains == "lora":
            continue
        meta = read_checkpoint_meta(ft / f"{g.trains}-s0")
        assert meta["mixture"] == {k: v for k, v in made[g.trains].items()
                                   if k not in ("method", "seed", "domains")}
        assert meta["n_records"] == plain["n_records"] + sum(meta["mixture"]["counts"].values())
    above = read_checkpoint_meta(ft / "lora-mix_sts_above_min-s0")
    assert above["recipe"]["mixture"]["predictor"] == "sts_icl"
    assert above["mixture"]["allocation"] == "above_min"
    observed = pl.read_parquet(tmp_path / "results/tables/tiny/arith/observed.parquet")
    assert set(observed["method"]) == {g.trains for g in groups}
    methods = pl.read_parquet(tmp_path / "results/reports/tiny/arith/methods.parquet")
    assert set(methods["method"]) == {"lora", *made}
    for r in methods.filter(pl.col("method") != "lora").iter_rows(named=True):
        base = methods.filter((pl.col("method") == "lora")
                              & (pl.col("metric") == r["metric"])).row(0, named=True)
        # a share of a gain: only where the plain run improved beyond its interval (NLL lower)
        if (base["target_ci_high"] < 0 if r["metric"] == "nll" else base["target_ci_low"] > 0):
            assert r["gain_kept"] == pytest.approx(r["target_delta"] / base["target_delta"])
        else:
            assert r["gain_kept"] is None and "did not improve" in r["gain_kept_reason"]
    # each run's allocation, as its allocation job wrote it, beside uniform's split
    allocations = pl.read_parquet(tmp_path / "results/reports/tiny/arith/allocations.parquet")
    for run, a in made.items():
        rows = allocations.filter(pl.col("method") == run)
        assert dict(rows.select("domain", "count").iter_rows()) == a["counts"]
        assert rows["uniform"].sum() == 8
    assert "Data-mixture allocations" in (
        tmp_path / "results/reports/tiny/arith/summary.md").read_text()
    assert (tmp_path / "results/reports/tiny/arith/runs.png").stat().st_size > 0
    assert planned_jobs(tmp_path) == Counter()
    # uniform added: its split first (no replay, pool, plain run or scores again), then its
    # run's jobs (uniform comes before every run but the plain one in the training order)
    cfg["mixture"]["strategies"] = ["sts", "oracle", "uniform"]
    write_config(tmp_path, cfg)
    planned = planned_jobs(tmp_path)
    assert planned["allocation"] == 1
    assert not {"replay", "materialize_pool", "evaluate_base", "shift", "finetune"} & set(planned)
    ran = executed_jobs(snakemake(tmp_path, "--cores", "2"))
    assert (ran["allocation"], ran["finetune"], ran["evaluate_tuned"]) == (1, 1, 3)
    assert not {"replay", "materialize_pool", "evaluate_base", "shift"} & set(ran)
    assert planned_jobs(tmp_path) == Counter()


def test_runs_with_the_same_split_train_once(tiny_model_dir, tmp_path):
    """Two pool domains with the same items under one subject: equal scores and equal |Δ|, so
    the paper's sts rule and oracle split the budget as uniform does. The three runs train on
    the same data: one fine-tuning job (uniform's), evaluated once; the tables and the report
    give sts and oracle uniform's rows and say why."""
    mixture_project(tmp_path, tiny_model_dir, {"strategies": ["sts", "uniform", "oracle"]},
                    same_domains=True)
    ran = executed_jobs(snakemake(tmp_path, "--cores", "2", timeout=2400))
    made = allocations_made(tmp_path)
    assert {run: a["counts"] for run, a in made.items()} == {
        run: {"law": 4, "history": 4} for run in ("lora-mix_sts", "lora-mix_uniform",
                                                  "lora-mix_oracle")}
    assert made["lora-mix_sts"]["values"]["law"] == made["lora-mix_sts"]["values"]["history"]
    assert ran["allocation"] == 3
    assert ran["finetune"] == 2  # the plain run and uniform's
    assert ran["evaluate_tuned"] == 2 * 3
    ft = tmp_path / "results/finetune/tiny/arith"
    assert {p.name for p in ft.glob("*-s0")} == {"lora-s0", "lora-mix_uniform-s0"}
    assert not (tmp_path / "results/eval/tiny/arith/lora-mix_sts-s0").exists()
    observed = pl.read_parquet(tmp_path / "results/tables/tiny/arith/observed.parquet")
    assert set(observed["method"]) == {"lora", "lora-mix_uniform"}
    reports = tmp_path / "results/reports/tiny/arith"
    methods = pl.read_parquet(reports / "methods.parquet")
    for run in ("lora-mix_sts", "lora-mix_oracle"):
        rows = methods.filter(pl.col("method") == run).sort("metric")
        uniform = methods.filter(pl.col("method") == "lora-mix_uniform").sort("metric")
        assert rows["same_data_as"].to_list() == ["lora-mix_uniform"] * 2
        assert rows["target_delta"].to_list() == uniform["target_delta"].to_list()
        assert rows["others_mean"].to_list() == uniform["others_mean"].to_list()
    assert methods.filter(pl.col("method") == "lora-mix_uniform")["same_data_as"].is_null().all()
    allocations = pl.read_parquet(reports / "allocations.parquet")
    per_run = dict(allocations.unique("method").select("method", "trains").iter_rows())
    assert set(per_run.values()) == {"lora-mix_uniform"}
    summary = (reports / "summary.md").read_text()
    assert "| lora-mix_sts (= lora-mix_uniform) |" in summary
    assert ("the same training data as lora-mix_uniform, lora-mix_oracle (one run, trained and "
            "evaluated once, as lora-mix_uniform)") in summary
    assert planned_jobs(tmp_path) == Counter()


def test_snakemake_report_is_self_contained(project, tmp_path):
    workdir, _ = project
    out = tmp_path / "report.html"
    snakemake(workdir, "--report", str(out))
    text = out.read_text(errors="replace")
    assert out.stat().st_size > 10_000
    for needle in ("summary.html", "correlations.parquet", "scatter_sts_act.png", "forest.png",
                   "comparison.parquet", "bars.png", "s0.parquet", "Feature cards"):
        assert needle in text, needle


def test_reordering_config_keys_reruns_nothing(project, edit):
    """Params are compared as text by Snakemake; the validated config has canonical key order."""
    def reverse(obj):
        if isinstance(obj, dict):
            return {k: reverse(obj[k]) for k in reversed(list(obj))}
        return [reverse(v) for v in obj] if isinstance(obj, list) else obj

    def apply(c):
        r = reverse(c)
        c.clear()
        c.update(r)
    edit(apply)
    assert planned_jobs(project[0]) == Counter()
