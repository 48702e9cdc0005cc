"""Downloads from the hub (stsflow.io.hub, the fetch rules, the ``hub`` SAE source), through the
real huggingface_hub code on a Hugging Face cache laid out as the hub library lays it out, with the
hub unreachable: what the jobs on a compute node see after fetch_model / fetch_sae ran on the
login node."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import COMMIT, cache_repo

from stsflow.config.schema import ConfigError
from stsflow.config.settings import ModelSettings, SaeSettings
from stsflow.io import hub
from stsflow.jobs import prepare as prepare_job

@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache, and the hub library offline (as on a compute node)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_fetch_repo_lists_only_the_requested_files_with_the_commit(hub_cache):
    cache_repo(hub_cache, "org/model", {"config.json": b"{}", "model.safetensors": b"w",
                                         "original/consolidated.00.pth": b"big",
                                         "tokenizer.json": b"{}"})
    got = hub.fetch_model({"hf": {"id": "org/model", "revision": "main"}})
    assert got["revision"] == COMMIT and got["requested"] == "main"
    assert got["files"] == ["config.json", "model.safetensors", "tokenizer.json"]
    assert got["bytes"] == 5
    assert hub.fetch_model({"gguf_package": {"package": "x", "file": "y"}}) is None


def test_fetch_of_a_missing_repository_or_folder_fails_clearly(hub_cache):
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(LocalEntryNotFoundError):
        hub.fetch_repo("org/absent", "main", ["*"])
    cache_repo(hub_cache, "org/saes", {"blocks.3.hook_resid_post/cfg.json": b"{}"})
    with pytest.raises(FileNotFoundError, match="no file matches"):
        hub.fetch_sae({"hub": {"repo": "org/saes", "path": "blocks.25.hook_resid_post",
                               "revision": "main"}})


def test_registry_location_reads_the_sae_lens_registry():
    from stsflow.config import facts

    if facts.sae_registry() is None:
        pytest.skip("sae-lens (and its registry file) is not installed")
    assert hub.registry_location("llama-3-8b-it-res-jh", "blocks.25.hook_resid_post") == (
        "Juliushanhanhan/llama-3-8b-it-res", "blocks.25.hook_resid_post")
    with pytest.raises(KeyError, match="not in the installed sae-lens registry"):
        hub.registry_location("llama-3-8b-it-res-jh", "blocks.99.hook_resid_post")


def test_fetch_job_records_what_it_fetched(hub_cache, tmp_path):
    """The fetch rules' job: a record of repository, commit and files, no machine paths."""
    cache_repo(hub_cache, "org/saes", {"blocks.1.hook_resid_post/cfg.json": b"{}",
                                        "blocks.1.hook_resid_post/sae_weights.safetensors": b"ww",
                                        "blocks.2.hook_resid_post/cfg.json": b"{}"})
    out = tmp_path / "rec" / "sae.json"
    prepare_job.fetch(None, {"hub": {"repo": "org/saes", "path": "blocks.1.hook_resid_post",
                                     "revision": "main"}}, out)
    rec = json.loads(out.read_text())
    assert rec == {"repo": "org/saes", "requested": "main", "revision": COMMIT,
                   "path": "blocks.1.hook_resid_post", "bytes": 4,
                   "files": ["blocks.1.hook_resid_post/cfg.json",
                             "blocks.1.hook_resid_post/sae_weights.safetensors"]}
    with pytest.raises(ValueError, match="not on the hub"):
        prepare_job.fetch(None, {"train": {}}, tmp_path / "none.json")


def test_prepare_model_pins_the_fetched_commit(hub_cache, tmp_path, tiny_model_dir):
    """A hub model prepared after fetch_model records the fetched commit as its revision, and
    loads from the cache with the hub unreachable."""
    from stsflow.models.load import load_model

    files = {f.name: f for f in Path(tiny_model_dir).iterdir() if f.is_file()}
    cache_repo(hub_cache, "org/tiny", files)
    rec = tmp_path / "fetched.json"
    prepare_job.fetch({"hf": {"id": "org/tiny", "revision": "main"}}, None, rec)
    assert json.loads(rec.read_text())["revision"] == COMMIT
    spec = ModelSettings.with_defaults(source={"hf": {"id": "org/tiny", "revision": "main"}})
    prepare_job.prepare_model(spec, tmp_path / "model", fetched=rec)
    info = json.loads((tmp_path / "model" / "stsflow_model.json").read_text())
    assert (info["kind"], info["id"], info["revision"]) == ("hf", "org/tiny", COMMIT)
    model, tok, _ = load_model(tmp_path / "model", "float32", "cpu")
    assert model.config.num_hidden_layers == info["n_layers"]


@pytest.fixture
def sae_job(tiny_model_dir, tmp_path):
    from conftest import sft_records

    from stsflow.data import corpora

    source = {"local": {"path": str(tiny_model_dir)}}
    prepare_job.prepare_model(ModelSettings.with_defaults(source=source), tmp_path / "model")
    corpora.write_records(sft_records(12), tmp_path / "sft.parquet", {"source": "test"})
    mspec = ModelSettings.with_defaults(source=source, device="cpu", batch_size=4,
                                        max_length=256)
    return tmp_path, mspec


def run_sae_job(sae_job, spec: dict, out: Path, layer: int = 1):
    root, mspec = sae_job
    prepare_job.prepare_sae(root / "model", mspec, layer,
                            SaeSettings.with_defaults(**{"eval_tokens": 300, **spec}),
                            {"arith": ("sft", root / "sft.parquet")}, [], ["arith"], out,
                            where=f"models.tiny.layers.{layer}.sae", n_top=[8])
    return json.loads((out / "stsflow_sae.json").read_text())


def test_hub_sae_is_read_from_its_folder_checked_and_saved(hub_cache, sae_job, tmp_path):
    """prepare_sae on a ``hub`` SAE: found in the cache, checked against the layer, kept with the
    results, and its encoder equals the sae-lens SAE in the repository."""
    from sae_lens import SAE
    from conftest import saved_sae

    from stsflow.sae.prepare import load_sae

    folder = saved_sae(tmp_path / "sae_files", hook="blocks.1.hook_resid_post")
    files = {f"saes/blocks.1.hook_resid_post/{f.name}": f for f in folder.iterdir()}
    cache_repo(hub_cache, "org/saes", files)
    spec = {"hub": {"repo": "org/saes", "path": "saes/blocks.1.hook_resid_post",
                    "revision": "main"}}
    info = run_sae_job(sae_job, spec, tmp_path / "out")
    assert (info["kind"], info["repo"], info["repo_path"], info["revision"]) == (
        "hub", "org/saes", "saes/blocks.1.hook_resid_post", COMMIT)
    assert info["width"] == 64 and math.isfinite(info["fraction_variance_explained"])
    encoder, _ = load_sae(tmp_path / "out")
    x = torch.randn(5, 32)
    want = SAE.load_from_disk(str(folder)).encode(x)
    assert torch.allclose(encoder.encode(x).to(want.dtype), want, atol=1e-5)
    shutil.rmtree(hub_cache)  # the prepared SAE no longer needs the cache
    assert torch.equal(load_sae(tmp_path / "out")[0].encode(x), encoder.encode(x))


def test_hub_sae_of_another_layer_is_refused_before_its_weights_load(hub_cache, sae_job,
                                                                     tmp_path):
    from conftest import saved_sae

    folder = saved_sae(tmp_path / "sae_files", hook="blocks.0.hook_resid_post")
    cache_repo(hub_cache, "org/saes", {f"L0/{f.name}": f for f in folder.iterdir()})
    with pytest.raises(ConfigError, match=r"hub\.path: the SAE reads 'blocks\.0\.hook_resid_post'"):
        run_sae_job(sae_job, {"hub": {"repo": "org/saes", "path": "L0", "revision": "main"}},
                    tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_validation_checks_a_hub_sae_folder_named_after_its_hook(tmp_path,
                                                                        tiny_model_dir):
    """A ``hub`` SAE whose folder names another layer's hook is refused when the config is
    read, before anything downloads; the revision defaults to main."""
    from workflow_helpers import tiny_config

    from stsflow import config as stsconfig

    cfg = tiny_config(tmp_path, tiny_model_dir)
    cfg["models"]["tiny"]["layers"][1]["sae"] = {
        "hub": {"repo": "org/saes", "path": "saes/blocks.1.hook_resid_post"}}
    ok = stsconfig.validate(cfg, base_dir=tmp_path)
    assert ok["models"]["tiny"]["layers"][1]["sae"]["hub"]["revision"] == "main"
    assert ok["hub_downloads"] == "local"
    cfg["models"]["tiny"]["layers"][1]["sae"]["hub"]["path"] = "blocks.3.hook_resid_post"
    with pytest.raises(ConfigError, match=r"layers\.1\.sae\.hub\.path: the SAE reads "
                                          r"'blocks\.3\.hook_resid_post'.*move it to layer 3"):
        stsconfig.validate(cfg, base_dir=tmp_path)
    cfg["hub_downloads"] = "elsewhere"
    with pytest.raises(ConfigError, match="hub_downloads"):
        stsconfig.validate(cfg, base_dir=tmp_path)


def test_fetch_model_refuses_a_repository_without_safetensors(hub_cache):
    cache_repo(hub_cache, "org/pickled", {"config.json": b"{}", "pytorch_model.bin": b"w"})
    with pytest.raises(FileNotFoundError, match="no safetensors weights"):
        hub.fetch_model({"hf": {"id": "org/pickled", "revision": "main"}})


def test_hub_sae_reads_the_fetched_commit_not_the_branch(hub_cache, sae_job, tmp_path):
    """prepare_sae with fetch_sae's record reads the commit fetched, even after the branch moved
    on in the cache; a folder without cfg.json is refused with the field and the fix."""
    from conftest import saved_sae

    old = saved_sae(tmp_path / "old", hook="blocks.1.hook_resid_post", width=64)
    new = saved_sae(tmp_path / "new", hook="blocks.1.hook_resid_post", width=96)
    cache_repo(hub_cache, "org/saes", {f"L1/{f.name}": f for f in old.iterdir()})
    spec = {"hub": {"repo": "org/saes", "path": "L1", "revision": "main"}}
    record = tmp_path / "fetched.json"
    prepare_job.fetch(None, spec, record)
    later = "f" * 40
    cache_repo(hub_cache, "org/saes", {f"L1/{f.name}": f for f in new.iterdir()}, commit=later)
    root, mspec = sae_job
    out = tmp_path / "out"
    prepare_job.prepare_sae(root / "model", mspec, 1,
                            SaeSettings.with_defaults(eval_tokens=300, **spec),
                            {"arith": ("sft", root / "sft.parquet")}, [], ["arith"], out,
                            where="models.tiny.layers.1.sae", n_top=[8], fetched=record)
    info = json.loads((out / "stsflow_sae.json").read_text())
    assert (info["revision"], info["width"]) == (COMMIT, 64)
    assert run_sae_job(sae_job, spec, tmp_path / "moved")["width"] == 96  # no record: the branch
    cache_repo(hub_cache, "org/other", {"L1/readme.txt": b"not an SAE"})
    with pytest.raises(ConfigError, match=r"hub\.path: no sae-lens cfg\.json in L1 of org/other"):
        run_sae_job(sae_job, {"hub": {"repo": "org/other", "path": "L1", "revision": "main"}},
                    tmp_path / "none")


def test_model_jobs_switch_the_hub_library_offline(monkeypatch):
    """What the model jobs' scripts call first: the hub library reads its cache only."""
    import huggingface_hub.constants as constants

    from stsflow.jobs.common import hub_offline

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub_offline()
    assert constants.HF_HUB_OFFLINE is True
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.delenv("HF_HUB_OFFLINE")
