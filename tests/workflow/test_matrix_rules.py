"""The workflow side of the analysis across SFT sets, without Snakemake: its targets only with two
SFT sets or more, its named inputs (the STS tables, the observed ones of tuned SFT sets only), its
parameters, the reserved folder name, and the per-SFT reports' provenance hash, which adding an
SFT set leaves as it was (no per-SFT report reruns)."""

from __future__ import annotations

import copy
import re

import pytest
from conftest import sft_records, write_jsonl
from workflow_helpers import tiny_config

from stsflow.workflow import Workflow
from stsflow.workflow.bundles import MatrixFiles
from stsflow.workflow.layout import Layout


@pytest.fixture
def config(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(tmp_path, tiny_model_dir, observed=False, finetune=True)
    write_jsonl(tmp_path / "data" / "recall.jsonl", sft_records(12))
    cfg["sft"]["recall"] = {"source": {"local": {"path": "data/recall.jsonl"}},
                            "target": "history"}
    return cfg


def test_the_matrix_is_a_target_only_with_two_sft_sets(config):
    L = Workflow(config).layout
    page = L.matrix_page("tiny")["html"]
    assert page == "results/reports/tiny/matrix/summary.html"
    assert page in Workflow(config).targets()
    assert set(L.matrix_tables("tiny").values()) <= set(Workflow(config).targets())
    single = copy.deepcopy(config)
    del single["sft"]["recall"]
    assert not [t for t in Workflow(single).targets() if "/matrix/" in t]


def test_matrix_inputs_and_params(config):
    config["observed"] = [{"model": "tiny", "sft": "recall", "metric": "accuracy",
                           "deltas": {"law": -1.0, "physics": 2.0}}]
    wf = Workflow(config)
    w = type("W", (), {"model": "tiny"})()
    named = wf.inputs.matrix(w)
    files = MatrixFiles.read(named)
    assert files.sts == {s: wf.layout.table("tiny", s, "sts") for s in ("arith", "recall")}
    assert files.observed == {s: wf.layout.table("tiny", s, "observed")
                              for s in ("arith", "recall")}
    p = wf.params.matrix(w)
    assert p["sfts"] == ["arith", "recall"] and p["domains"] == sorted(p["domains"])
    assert p["targets"] == {"arith": None, "recall": "history"}
    # report.primary resolved for the model: the first evaluated metric, N 10 (closest to 100),
    # the layer's own SAE; the matrix's normalisation default and the lowest ICL seed
    assert {k: p["primary"][k] for k in ("predictor", "normalisation", "metric", "target",
                                         "layer", "sae", "n_top", "seed")} == {
        "predictor": "sts_icl", "normalisation": "zscore", "metric": "nll", "target": "abs",
        "layer": 1, "sae": "main", "n_top": 10, "seed": 0}
    assert wf.params.matrix_given(w) == [
        {"model": "tiny", "sft": "recall", "domain": "law", "metric": "accuracy", "delta": -1.0},
        {"model": "tiny", "sft": "recall", "domain": "physics", "metric": "accuracy",
         "delta": 2.0}]
    # fine-tuning off: the STS tables only (prediction only)
    config["finetune"]["enabled"] = False
    assert MatrixFiles.read(Workflow(config).inputs.matrix(w)).observed == {}


def test_no_sft_set_takes_the_matrix_folder(config):
    pattern = Workflow(config).patterns["sft"]
    assert re.fullmatch(pattern, "matrix") is None
    assert all(re.fullmatch(pattern, n) for n in ("matrix2", "matrix-b", "amatrix", "arith"))
    assert set(Layout.MATRIX_PAGE.values()) == {"summary.html", "summary.md",
                                                _heatmap_name()}


def _heatmap_name() -> str:
    from stsflow.report.matrix import HEATMAP

    return HEATMAP


def test_a_new_sft_set_leaves_the_other_reports_provenance_as_it_was(config):
    """The per-SFT report names the sha256 of its own slice of the config: another SFT set or a
    matrix setting leaves it; anything of its own (a domain, its SFT set) changes it."""
    w = type("W", (), {"model": "tiny", "sft": "arith"})()

    def sha(cfg):
        return Workflow(cfg).params.report_config_sha256(w)

    base = sha(config)
    fewer = copy.deepcopy(config)
    del fewer["sft"]["recall"]
    assert sha(fewer) == base
    other = copy.deepcopy(config)
    other["report"]["matrix"] = {"top_k": 5}
    assert sha(other) == base
    mine = copy.deepcopy(config)
    mine["sft"]["arith"]["max_items"] = 5
    assert sha(mine) != base
    domain = copy.deepcopy(config)
    domain["domains"]["law"]["max_items"] = 3
    assert sha(domain) != base
    # the per-SFT report's settings leave report.matrix out as well
    assert "matrix" not in Workflow(config).params.report()
