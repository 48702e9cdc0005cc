"""Which data-mixture runs the workflow trains, from their allocation files
(stsflow.workflow.mixture), on the embedded default with `make apply`'s overlay: what the
aggregates ask for before, while and after the splits are made, and what a mixture run's
fine-tuning and allocation jobs read."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO

from stsflow.mixture.allocation_file import write_allocation
from stsflow.mode import Shift

MODEL, SFT = "smollm2-135m", "math"
DOMAINS = ["business", "physics", "chemistry", "engineering"]
MIXED = ["lora-mix_sts", "lora-mix_sts_rank", "lora-mix_uniform", "lora-mix_oracle"]


@pytest.fixture(scope="module")
def apply_config():
    from snakemake.utils import update_config

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(cfg, yaml.safe_load(
        (REPO / "stsflow/presets/embedded/apply.yaml").read_text()))
    return cfg


@pytest.fixture
def wf(apply_config, tmp_path):
    from stsflow.workflow import Workflow
    from stsflow.workflow.mixture import MixtureRuns

    wf = Workflow(copy.deepcopy(apply_config))
    wf.mixture = MixtureRuns(wf, root=tmp_path)  # the allocation files under tmp_path
    return wf


def split(wf, root, method, counts):
    write_allocation(root / wf.layout.allocation_file(MODEL, SFT, method, 0), method, 0,
                     DOMAINS, {"strategy": "x", "weights": {}, "counts": dict(zip(DOMAINS, counts)),
                               "n_short": 0, "available": {}, "values": {}})


def test_the_default_runs_the_papers_rule_and_a_contrast_rule_beside_the_controls(wf):
    assert wf.runs(MODEL, SFT) == [
        ("lora", 0), ("sae_select-top-k64", 0), ("sae_select-random-k64", 0),
        ("lora-mix_sts", 0), ("lora-mix_sts_rank", 0), ("lora-mix_uniform", 0),
        ("lora-mix_oracle", 0)]


def test_before_any_split_the_aggregates_wait_for_every_allocation(wf):
    runs = wf.mixture.resolve(MODEL, SFT)
    assert runs.trained == [("lora", 0), ("sae_select-top-k64", 0), ("sae_select-random-k64", 0)]
    assert runs.same == {} and runs.allocations == {}
    assert runs.pending == [wf.layout.allocation_file(MODEL, SFT, m, 0) for m in MIXED]
    w = SimpleNamespace(model=MODEL, sft=SFT)
    observed = wf.inputs.observed_tuned(w)
    assert set(runs.pending) <= set(observed)
    assert not any("-mix_" in p for p in observed if p not in runs.pending)
    report = wf.inputs.report(w)
    assert {k for k in report if k.startswith("pending:")} == {f"pending:{i}" for i in range(4)}
    assert not any(k.startswith(("history:lora-mix", "allocation:")) for k in report)


def test_a_run_is_known_once_its_split_and_every_earlier_runs_are(wf, tmp_path):
    # uniform's split alone: uniform trains (only the plain run is before it); the sts runs and
    # oracle come after sts, whose split is not made: they wait
    split(wf, tmp_path, "lora-mix_uniform", [20, 20, 20, 20])
    split(wf, tmp_path, "lora-mix_oracle", [32, 36, 5, 7])
    runs = wf.mixture.resolve(MODEL, SFT)
    assert ("lora-mix_uniform", 0) in runs.trained
    assert not {("lora-mix_oracle", 0), ("lora-mix_sts", 0)} & set(runs.trained)
    assert runs.pending == [wf.layout.allocation_file(MODEL, SFT, m, 0)
                            for m in ("lora-mix_sts", "lora-mix_sts_rank")]
    assert set(runs.allocations) == {("lora-mix_uniform", 0), ("lora-mix_oracle", 0)}


def test_a_split_equal_to_an_earlier_runs_is_that_run(wf, tmp_path):
    # the default's case: the paper's rule splits as uniform does, rank does not
    for method, counts in (("lora-mix_uniform", [20, 20, 20, 20]),
                           ("lora-mix_sts", [20, 20, 20, 20]),
                           ("lora-mix_sts_rank", [16, 8, 24, 32]),
                           ("lora-mix_oracle", [16, 8, 24, 32])):
        split(wf, tmp_path, method, counts)
    runs = wf.mixture.resolve(MODEL, SFT)
    assert runs.pending == []
    assert runs.same == {("lora-mix_sts", 0): "lora-mix_uniform",
                         ("lora-mix_oracle", 0): "lora-mix_sts_rank"}
    assert runs.trained == [("lora", 0), ("sae_select-top-k64", 0),
                            ("sae_select-random-k64", 0), ("lora-mix_sts_rank", 0),
                            ("lora-mix_uniform", 0)]
    w = SimpleNamespace(model=MODEL, sft=SFT, layer=12, sae="main", seed=0)
    # nothing of a run that did not train is asked for: no evaluation, true shift or history
    for p in wf.inputs.observed_tuned(w) + wf.inputs.oracle_parts(w) + wf.inputs.overlap_true(w):
        assert "mix_sts-s0" not in p and "mix_oracle-s0" not in p
    report = wf.inputs.report(w)
    assert {k for k in report if k.startswith("history:lora-mix")} == {
        "history:lora-mix_sts_rank-s0", "history:lora-mix_uniform-s0"}
    # ... but the report reads every split, to say which runs are one
    assert {k for k in report if k.startswith("allocation:")} == {
        f"allocation:{m}-s0" for m in MIXED}
    cards = wf.inputs.cards(w)
    assert cards["shifts"][1:] == [wf.layout.shift_file(MODEL, 12, "main", SFT, str(Shift(0, m)))
                                   for m in ("lora", "sae_select-top-k64",
                                             "sae_select-random-k64", "lora-mix_sts_rank",
                                             "lora-mix_uniform")]
    coverage = wf.inputs.coverage(w)
    assert "history:lora-mix_sts-s0" not in coverage and "history:lora-s0" in coverage


def test_a_split_with_no_replay_item_is_the_plain_run(wf, tmp_path):
    split(wf, tmp_path, "lora-mix_uniform", [20, 20, 20, 20])
    split(wf, tmp_path, "lora-mix_sts", [0, 0, 0, 0])
    split(wf, tmp_path, "lora-mix_sts_rank", [16, 8, 24, 32])
    split(wf, tmp_path, "lora-mix_oracle", [32, 36, 5, 7])
    assert wf.mixture.resolve(MODEL, SFT).same == {("lora-mix_sts", 0): "lora"}


def test_every_sts_rule_reads_the_scores_and_its_own_settings(wf):
    """A contrast rule's run reads the predictor's scores as the paper's does (its allocation
    job and its fine-tuning the same files), and its recipe carries its rule's settings only:
    softmax its temperature, the paper's rule and rank nothing more than before."""
    from stsflow.workflow.bundles import FinetuneFiles

    site = wf.mixture_site(MODEL)
    for method in ("lora-mix_sts", "lora-mix_sts_rank", "lora-mix_sts_softmax"):
        w = SimpleNamespace(model=MODEL, sft=SFT, method=method, seed=0)
        files = FinetuneFiles.read(wf.inputs.finetune(w))
        assert files.scores == {d: wf.layout.sts_part(MODEL, site["layer"], site["sae"], SFT,
                                                      "s0", site["n_top"], d) for d in DOMAINS}
        assert wf.inputs.allocation(w) == FinetuneFiles.mixture(wf, MODEL, SFT, method,
                                                                0).named()
        assert set(wf.inputs.allocation(w)) == {f"{k}:{d}" for k in ("replay", "score")
                                                for d in DOMAINS}
        recipe = wf.params.mixture_recipe(w)
        assert recipe["predictor"] == site["predictor"]
        assert ("temperature" in recipe) == method.endswith("softmax")
    w = SimpleNamespace(model=MODEL, sft=SFT, method="lora-mix_oracle", seed=0)
    assert set(wf.inputs.allocation(w)) == {f"{k}:{d}" for k in ("replay", "eval_base",
                                                                  "eval_plain") for d in DOMAINS}
