"""workflow_scripts/ holds only the scripts that rules run; profiles/ holds Snakemake profiles
(a directory with config.yaml) and profiles/admin, the scripts that install a profile and run the
SLURM test cluster, which is not a profile."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import REPO
from workflow_helpers import ALL_RULES, gpu_rules, workflow_rules


def test_workflow_scripts_holds_only_rule_scripts():
    named = {Path(r.script).name for r in workflow_rules(ALL_RULES).values() if r.script}
    present = {p.name for p in (REPO / "workflow_scripts").iterdir() if p.name != "__pycache__"}
    assert present == named, f"not run by any rule: {sorted(present - named)}"


def test_profiles_admin_is_not_a_profile():
    admin = REPO / "profiles" / "admin"
    assert not (admin / "config.yaml").exists()
    assert (admin / "README.md").is_file()
    assert {p.name for p in admin.glob("*.sh")} == {"install_profile.sh", "slurm_cluster.sh"}
    assert all((REPO / "profiles" / p / "config.yaml").is_file() for p in ("local", "slurm"))


def test_every_rule_is_either_a_cluster_job_or_a_local_rule():
    """On a cluster, a rule that runs a model or an SAE is submitted (its costs declared in
    stsflow.workflow.costs) and every other rule runs in the Snakemake process (`localrule`): a
    new rule must be put on one side. Hub downloads are local unless the config says the compute
    nodes are online."""
    from stsflow.workflow.costs import COSTS

    rules = workflow_rules(ALL_RULES)
    cluster = {name for name, r in rules.items() if not r.local}
    assert cluster == set(COSTS) == gpu_rules()
    online = workflow_rules(json.dumps({**json.loads(ALL_RULES), "hub_downloads": "cluster"}))
    assert {n for n, r in online.items() if not r.local} == set(COSTS) | {"fetch_model",
                                                                            "fetch_sae"}


def test_every_model_job_reads_the_hub_cache_offline():
    """The script of every rule that loads a model or an SAE switches the hub library offline
    first (fetch_model / fetch_sae downloaded what it loads): a new one cannot forget it."""
    rules = workflow_rules(ALL_RULES)
    for rule in gpu_rules():
        body = (REPO / "rules" / rules[rule].script).resolve().read_text()
        first_call = body.index("setup_logging(snakemake.log[0])")
        assert "\nhub_offline()" in body[first_call:], rule
        assert body.index("\nhub_offline()") < body.index("snakemake.input"), rule


def test_every_gpu_rule_takes_a_gpu_on_slurm():
    """On SLURM every GPU rule goes to the GPU partition with one GPU and two CPUs: a new GPU
    rule cannot be forgotten in the profile (the login node that plans may have no GPU, so the
    profile, not the rule, says so). The sharded fine-tuning rule holds several GPUs: its count
    and CPUs are the rule's own, from the config, so the profile gives it its partition only."""
    import yaml

    res = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    rules = gpu_rules() - {"finetune_sharded"}
    missing = {r for r in rules if "gpu" not in res["set-resources"].get(r, {})}
    assert not missing, f"profiles/slurm: no gpu resource for {sorted(missing)}"
    assert {r: res["set-threads"].get(r) for r in rules} == {r: 2 for r in rules}
    sharded = res["set-resources"]["finetune_sharded"]
    assert "slurm_partition" in sharded and "gpu" not in sharded
    assert "finetune_sharded" not in res["set-threads"]


def test_every_gpu_rule_requests_memory_runtime_and_a_gpu_unit():
    """Every model job's requests come from its cost declaration (stsflow.workflow.costs): GPU
    units, host and GPU memory and runtime; the local profile sets none of them itself."""
    rules = workflow_rules(ALL_RULES)
    for rule in gpu_rules():
        assert {"gpu", "mem_mb", "gpu_mem_mb", "runtime"} <= rules[rule].resources, rule
    local = (REPO / "profiles" / "local" / "config.yaml").read_text()
    assert "set-threads" not in local and "set-resources" not in local


@pytest.mark.parametrize("device, threads, gpu", [("cpu", 1, 0), ("cuda", 2, 1)])
def test_local_model_jobs_take_a_core_on_cpu_and_a_gpu_unit_on_a_gpu(
        tiny_model_dir, tmp_path, device, threads, gpu):
    """What the local profile plans for the jobs that run a model, read from a dry run."""
    from workflow_helpers import snakemake, tiny_config, write_config

    cfg = tiny_config(tmp_path, tiny_model_dir, finetune=True)
    cfg["models"]["tiny"]["device"] = device
    write_config(tmp_path, cfg)
    out = snakemake(tmp_path, "-n", "--verbose", "--profile", str(REPO / "profiles" / "local"),
                    "--cores", "3").stdout
    planned = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        t = re.search(r"^\s+threads: (\d+)", block, re.M)
        r = re.search(r"^\s+resources: (.*)$", block, re.M)
        if m and m.group(1) in gpu_rules():
            units = re.search(r"\bgpu=(\d+)", r.group(1)) if r else None
            planned.setdefault(m.group(1), set()).add(
                (int(t.group(1)) if t else 1, int(units.group(1)) if units else 0))
    assert {"extract", "prepare_sae", "finetune", "evaluate_base", "evaluate_tuned",
            "gradients"} <= set(planned)
    # fine-tuning takes two threads on a CPU too (with --cores 3: not every core)
    assert planned.pop("finetune") == {(2, gpu)}
    assert all(v == {(threads, gpu)} for v in planned.values()), planned
