"""The SAE training sweep (``stsflow bench --sae-sweep``): its base row is what the prepare_sae job
trains and records, its variants change only what they name, and the residuals it trains on are
drawn as train_sae draws them."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import domain_records, sft_records, write_jsonl

from stsflow.config.settings import ModelSettings, SaeSettings
from stsflow.jobs import prepare as prepare_job
from stsflow.sae import activations
from stsflow.sae import info as sae_info

LAYER = 1
# more tokens than the corpus holds: the kept residuals are trained on for several passes
TRAIN = {"architecture": "topk", "width": 64, "k": 4, "tokens": 6000, "batch_tokens": 64,
         "lr": 3e-3, "context_length": 32, "seed": 0, "corpora": ["arith"]}


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    """A results folder as a run leaves it before its SAEs (a prepared tiny model, a
    materialised SFT set), and the config whose layer-1 SAE trains on it."""
    from stsflow.data import corpora

    root = tmp_path_factory.mktemp("sweep")
    results = root / "results"
    source = {"local": {"path": str(tiny_model_dir)}}
    prepare_job.prepare_model(ModelSettings.with_defaults(source=source),
                              results / "models" / "tiny")
    corpora.write_records(sft_records(40), results / "data" / "sft" / "arith.parquet",
                          {"source": "test"})
    write_jsonl(root / "sft.jsonl", sft_records(40))
    write_jsonl(root / "law.jsonl", domain_records("law", 6))
    cfg = {"models": {"tiny": {"source": source, "device": "cpu", "batch_size": 4,
                               "layers": {LAYER: {"sae": {"eval_tokens": 300, "train": TRAIN}}}}},
           "sft": {"arith": {"source": {"local": {"path": str(root / "sft.jsonl")}}}},
           "domains": {"law": {"test": {"local": {"path": str(root / "law.jsonl")}},
                               "demos": {"local": {"path": str(root / "law.jsonl")}}}},
           "sts": {"n_top": [5], "m": 2}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root, results


def test_the_base_row_is_what_prepare_sae_records(run_dir, tmp_path):
    """Same windows, same held-out records, same batches, same trainer: the sweep's figures of
    the config's own recipe equal the prepared SAE's (up to the float noise of batching the
    model's passes differently)."""
    from stsflow import config as stsconfig
    from stsflow.sae import sweep

    root, results = run_dir
    cfg = stsconfig.load(root / "config.yaml", check_sources=False)
    model = cfg["models"]["tiny"]
    sae = SaeSettings.from_config({k: v for k, v in model["layers"][LAYER]["sae"].items()
                                   if k != "name"})
    prepare_job.prepare_sae(results / "models" / "tiny",
                            ModelSettings.from_config({k: model[k] for k in ModelSettings.keys()}),
                            LAYER, sae, {"arith": ("sft", results / "data/sft/arith.parquet")},
                            ["arith"], ["arith"], tmp_path / "sae", where="sae")
    want = json.loads((tmp_path / "sae" / sae_info.MANIFEST).read_text())
    cache, base, _ = sweep.build_cache(results, cfg, "tiny", LAYER, None, threads=1,
                                       keep=tmp_path / "resid.pt", log=lambda *a: None)
    assert base == sae.train
    assert cache.train_rows.shape[0] < TRAIN["tokens"], "the corpus is passed over again"
    got = sweep.run_variant(cache, base, {}, loss_recovered=True)
    assert got["eval_tokens"] == want["eval_tokens"] >= 300
    assert got["l0"] == pytest.approx(want["l0"], abs=0.01)
    for key in ("fraction_variance_explained", "loss_recovered", "dead_fraction"):
        assert got[key] == pytest.approx(want[key], abs=2e-3), key
    # the kept residuals are read back by the next run, and train the same SAE
    again, _, _ = sweep.build_cache(results, cfg, "tiny", LAYER, None, threads=1,
                                    keep=tmp_path / "resid.pt", log=lambda *a: None)
    assert torch.equal(again.train_rows, cache.train_rows)
    assert sweep.run_variant(again, base, {})["dead_fraction"] == got["dead_fraction"]


def test_the_sweep_command_prints_every_variant(run_dir, tmp_path, capsys):
    from stsflow.benchmark import main as bench

    root, results = run_dir
    out = tmp_path / "rows.json"
    assert bench(["--sae-sweep", "--results", str(results), "--config", str(root / "config.yaml"),
                  "--model", "tiny", "--layer", str(LAYER), "--variant", "width=32,k=2",
                  "--variant", "b_dec_init=mean,aux_loss_coefficient=0", "--loss-recovered",
                  "1", "--time-jobs", "0,1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [(r["width"], r["k"], r["b_dec_init"], r["options"]) for r in rows] == [
        (64, 4, "zeros", {}), (32, 2, "zeros", {}),
        (64, 4, "mean", {"aux_loss_coefficient": 0.0})]
    assert [("loss_recovered" in r) for r in rows] == [False, True, False]
    assert all(0 <= r["dead_fraction"] <= 1 and r["l0"] <= r["k"] for r in rows)
    table = text[text.index("SAE training sweep"):].splitlines()
    assert "dead = active on none of them" in table[0]
    assert [line.split()[:3] for line in table[2:5]] == [["0", "64", "4"], ["1", "32", "2"],
                                                         ["2", "64", "4"]]
    assert "row 0:" in text and "row 1:" in text and "x row 0" in text


def test_an_unknown_variant_key_is_refused():
    from stsflow.sae.sweep import parse_variant

    base = SaeSettings.with_defaults(train={}).train
    spec, options = parse_variant("width=128,lr=0.01,b_dec_init=mean,dead_feature_window=10",
                                  base)
    assert (spec.width, spec.lr, spec.b_dec_init, spec.k, options) == (
        128, 0.01, "mean", base.k, {"dead_feature_window": 10})
    with pytest.raises(ValueError, match="unknown key 'widht'"):
        parse_variant("widht=128", base)


def test_training_windows_and_batches_are_drawn_as_train_sae_draws_them():
    """covering_windows: a seeded draw of windows until they hold the tokens asked (all when
    they hold fewer); residual_batches: every pass over the rows a fresh permutation."""
    windows = [([0] * (10 + i), 2) for i in range(20)]  # 8 + i encoded positions each
    chosen = activations.covering_windows(windows, 50, seed=3)
    assert chosen == activations.covering_windows(windows, 50, seed=3)
    assert len(set(chosen)) == len(chosen)
    held = [8 + i for i in chosen]
    assert sum(held) >= 50 > sum(held[:-1])
    assert sorted(activations.covering_windows(windows, 10 ** 6, seed=3)) == list(range(20))
    rows = torch.arange(30.0).unsqueeze(1)
    batches = list(activations.residual_batches(rows, batch_tokens=7, total_tokens=70, seed=0))
    assert len(batches) == 10 and all(b.shape == (7, 1) for b in batches)
    # 4 batches per pass (28 of 30 rows): within a pass no row twice
    for p in range(2):
        seen = torch.cat(batches[4 * p:4 * p + 4]).flatten().tolist()
        assert len(set(seen)) == 28
    with pytest.raises(ValueError, match="fewer than one batch"):
        next(activations.residual_batches(rows, batch_tokens=31, total_tokens=70, seed=0))
