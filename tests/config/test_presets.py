"""The paper-scale presets in stsflow/presets/: each validates offline and builds its full DAG in a
Snakemake dry run with the hub unreachable (hub corpora are read only when materialised, layer
ranges come from n_layers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import tomllib
import yaml
from conftest import REPO

from stsflow import config as stsconfig
from stsflow.config import facts

PRESETS = REPO / "stsflow" / "presets"
MMLU_PRO = ["biology", "business", "chemistry", "computer science", "economics", "engineering",
            "health", "history", "law", "math", "other", "philosophy", "physics", "psychology"]
# preset -> (model key, hub id, n_layers, {layer: (sae-lens release, sae_id)})
EXPECTED = {
    "qwen2.5-7b-instruct": ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", 28,
                            {23: ("qwen2.5-7b-instruct-andyrdt", "resid_post_layer_23_trainer_1")}),
    # the paper's Llama setting: the model and SAE of the authors' release
    "llama3-8b-instruct": ("llama3-8b-instruct", "meta-llama/Meta-Llama-3-8B-Instruct", 32,
                           {25: ("llama-3-8b-it-res-jh", "blocks.25.hook_resid_post")}),
    "llama3.1-8b-instruct": ("llama3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", 32,
                             {25: ("llama_scope_lxr_8x", "l25r_8x")}),
    "gemma2-9b-it": ("gemma2-9b-it", "google/gemma-2-9b-it", 42,
                     {31: ("gemma-scope-9b-it-res", "layer_31/width_131k/average_l0_13")}),
}
# the paper's Qwen2.5-7B-Instruct / LIMO table (docs/method.md#paper-figures), in points
QWEN_DELTAS = {"engineering": -9.8, "chemistry": -6.36, "physics": -5.24, "computer_science": -4.88,
               "business": -4.43, "health": -2.93, "math": -2.89, "economics": -2.61,
               "philosophy": -2.4, "biology": 1.53, "other": -1.3, "psychology": -0.37,
               "history": 0.26, "law": -0.19}


def offline_env(tmp_path: Path) -> dict:
    """No hub, and an empty HF cache, so nothing downloaded earlier can make a test pass."""
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                HF_HOME=str(tmp_path / "hf_home"), WANDB_MODE="disabled",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def dry_run(workdir: Path, preset: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
           str(preset), "--directory", str(workdir), "-n", "--cores", "1", *extra]
    return subprocess.run(cmd, cwd=workdir, env=offline_env(workdir), capture_output=True,
                          text=True, timeout=120)


def job_counts(text: str) -> Counter:
    """The first 'Job stats' table of a dry run, per rule."""
    table = text.split("Job stats:")[1]
    counts = Counter()
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def expected_jobs(cfg: dict) -> Counter:
    """Jobs of a preset as shipped (one model, one SFT set, registry SAEs; the validation loop
    when fine-tuning is on: full runs sharded over 8 GPUs)."""
    (model,) = cfg["models"].values()
    n_layers, n_dom = len(model["layers"]), len(cfg["domains"])
    sts = cfg["sts"]
    seeds, n_top = len(sts["seeds"]), len(sts["n_top"])
    jobs = Counter(materialize_domain=n_dom, materialize_sft=1, prepare_model=1,
                   prepare_sae=n_layers, fetch_model=1, fetch_sae=n_layers,
                   # SFT: plain + one ICL run per seed; domains: plain + ICL
                   extract=n_layers * (1 + seeds + 2 * n_dom),
                   shift=n_layers * seeds, sts=n_layers * seeds * n_top * n_dom,
                   gradients=1 + n_dom,  # grad_sim: the SFT set and each domain, once
                   sts_table=1, coverage=1, manifest=1, all=1,
                   cards=n_layers * seeds)  # feature cards, one per layer and seed
    if cfg.get("observed"):
        jobs["report"] = 1
    if cfg["finetune"]["enabled"]:  # one run per seed: evaluated, its true shift scored
        jobs.update(finetune_sharded=seeds, evaluate_base=n_dom, evaluate_tuned=n_dom * seeds,
                    extract=n_layers * seeds, true_shift=n_layers * seeds,
                    sts=n_layers * seeds * n_top * n_dom, observed=1, overlap=1,
                    oracle_table=1)
        jobs["report"] = 1
    return jobs


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def preset(request):
    path = PRESETS / f"{request.param}.yaml"
    return request.param, path, yaml.safe_load(path.read_text())


def test_presets_are_package_data():
    assert sorted(p.stem for p in PRESETS.glob("*.yaml")) == sorted(EXPECTED)
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "presets/*.yaml" in data["tool"]["setuptools"]["package-data"]["stsflow"]


def test_preset_contents(preset):
    name, path, cfg = preset
    key, hub_id, n_layers, saes = EXPECTED[name]
    assert path.read_text().startswith("# stsflow preset:"), "header comment"
    assert list(cfg["models"]) == [key]
    m = cfg["models"][key]
    assert m["source"] == {"hf": {"id": hub_id}}
    assert (m["n_layers"], m["dtype"], m["device"], m["chat_template"], m["batch_size"],
            m["max_length"]) == (n_layers, "bfloat16", "auto", True, 8, 2048)
    assert {int(k): (v["sae"]["registry"]["release"], v["sae"]["registry"]["sae_id"])
            for k, v in m["layers"].items()} == saes
    assert cfg["sft"] == {"limo": {"source": {"hub": {"id": "GAIR/LIMO", "split": "train"}},
                                   "schema": "limo"}}
    assert len(cfg["domains"]) == 14
    for dom_key, dom in cfg["domains"].items():
        assert " " not in dom_key
        category = dom["test"]["filter"]["category"]
        assert dom_key == category.replace(" ", "_")
        assert dom["test"] == {"hub": {"id": "TIGER-Lab/MMLU-Pro", "split": "test"},
                               "filter": {"category": category}}
        assert dom["demos"] == {"hub": {"id": "TIGER-Lab/MMLU-Pro", "split": "validation"},
                                "filter": {"category": category}}
    assert sorted(d["test"]["filter"]["category"] for d in cfg["domains"].values()) == MMLU_PRO
    assert cfg["sts"] == {"n_top": [50, 100, 200], "t": 2, "m": 5, "sft_tokens": 20000,
                          "domain_tokens": 10000, "seeds": [0, 1, 2]}
    if name == "qwen2.5-7b-instruct":
        (obs,) = cfg["observed"]
        assert (obs["model"], obs["sft"], obs["metric"]) == (key, "limo", "paper_mmlu_pro_cot")
        assert "ICLR 2026" in obs["source"] and "LIMO" in obs["source"]
        assert obs["deltas"] == QWEN_DELTAS
    else:
        assert not cfg.get("observed")


def test_preset_sae_is_in_the_sae_lens_registry(preset):
    name, _, cfg = preset
    registry = facts.sae_registry()
    if registry is None:
        pytest.skip("sae-lens (and its registry file) is not installed")
    for layer in next(iter(cfg["models"].values()))["layers"].values():
        reg = layer["sae"]["registry"]
        assert reg["sae_id"] in registry[reg["release"]], (name, reg)


def test_preset_validates_offline(preset, tmp_path, monkeypatch):
    _, path, _ = preset
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    cfg = stsconfig.load(path, base_dir=tmp_path)
    ft = cfg["finetune"]
    assert ft["enabled"] is True and ft["processes"] == 8
    assert ft["methods"] == ["full"] and ft["epochs"] == 10


def test_preset_dry_run_offline(preset, tmp_path):
    name, path, cfg = preset
    proc = dry_run(tmp_path, path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-6000:]
    assert job_counts(text) == expected_jobs(cfg)
    assert not (tmp_path / "results").exists(), "a dry run must not write results"


def test_preset_finetuning_is_one_job_holding_8_gpus(tmp_path):
    """The paper's recipe (full fine-tuning, 3 seeds) as shipped: each run one job holding the 8
    GPUs of a node, with the per-GPU memory of its shard; without processes, one GPU each, with
    the whole model's memory."""
    def finetune_jobs(path):
        proc = dry_run(tmp_path, path)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, text[-6000:]
        blocks = [b for b in text.split("\nrule ")[1:] if b.startswith(("finetune:",
                                                                          "finetune_sharded:"))]
        res = [dict(kv.split("=") for kv in re.search(r"resources: (.*)", b).group(1).split(", "))
               for b in blocks]
        return job_counts(text), [b.split(":")[0] for b in blocks], res

    path = PRESETS / "qwen2.5-7b-instruct.yaml"
    jobs, rules, res = finetune_jobs(path)
    assert jobs["finetune_sharded"] == 3 and "finetune" not in jobs
    assert jobs["evaluate_base"] == 14 and jobs["evaluate_tuned"] == 42 and jobs["observed"] == 1
    assert rules == ["finetune_sharded"] * 3 and {r["gpu"] for r in res} == {"8"}
    cfg = yaml.safe_load(path.read_text())
    cfg["finetune"]["processes"] = 1
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump(cfg, sort_keys=False))
    jobs1, rules1, res1 = finetune_jobs(one)
    assert jobs1["finetune"] == 3 and "finetune_sharded" not in jobs1
    # 16 bytes/parameter over 8 GPUs: far less per GPU than one GPU holding it all
    assert int(res[0]["gpu_mem_mb"]) < int(res1[0]["gpu_mem_mb"]) / 2

def test_documented_command_next_to_the_default_config(tmp_path):
    """The presets' header command: in a working directory that has the embedded default
    config.yaml (the repo root), --replace-workflow-config keeps it out of the preset's config."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    path = PRESETS / "llama3.1-8b-instruct.yaml"
    assert "--replace-workflow-config" in path.read_text()
    proc = dry_run(tmp_path, path, "--replace-workflow-config")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert job_counts(proc.stdout + proc.stderr)["materialize_domain"] == 14


def local_rules(preset: Path, tmp_path: Path, *config: str) -> set[str]:
    """The rules Snakemake runs itself rather than submitting, for a preset (and --config), as
    `stsflow plan` reads them (in a process of its own: Snakemake's API keeps global state)."""
    code = ("import sys\nfrom pathlib import Path\nfrom stsflow.plan import local_rules\n"
            "print(' '.join(sorted(local_rules(Path(sys.argv[1]), Path(sys.argv[2]), "
            "sys.argv[3:]))))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "Snakefile"), str(preset),
                           *config], cwd=tmp_path, env=offline_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return set(proc.stdout.split("\n")[-2].split())


def test_hub_downloads_run_on_the_login_node_unless_the_profile_says_otherwise(tmp_path):
    """fetch_model and fetch_sae are local jobs by default (on many clusters only the login node
    reaches the hub); `hub_downloads=cluster` (a profile's `config:`) submits them."""
    preset = PRESETS / "llama3-8b-instruct.yaml"
    default = local_rules(preset, tmp_path)
    assert {"fetch_model", "fetch_sae", "materialize_domain", "prepare_model"} <= default
    online = local_rules(preset, tmp_path, "hub_downloads=cluster")
    assert default - online == {"fetch_model", "fetch_sae"}
    assert "materialize_domain" in online  # datasets are always read locally
