"""workflow_scripts/ holds only the scripts that rules run; profiles/ holds Snakemake profiles
(a directory with config.yaml) and profiles/admin, the scripts that install a profile and run the
SLURM test cluster, which is not a profile."""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from workflow_helpers import gpu_rules


def test_workflow_scripts_holds_only_rule_scripts():
    named = set()
    for smk in (REPO / "rules").glob("*.smk"):
        named |= set(re.findall(r"^    script:\s*\n\s*\"\.\./workflow_scripts/([^\"]+)\"",
                                smk.read_text(), flags=re.MULTILINE))
    present = {p.name for p in (REPO / "workflow_scripts").iterdir() if p.name != "__pycache__"}
    assert present == named, f"not run by any rule: {sorted(present - named)}"


def test_profiles_admin_is_not_a_profile():
    admin = REPO / "profiles" / "admin"
    assert not (admin / "config.yaml").exists()
    assert (admin / "README.md").is_file()
    assert {p.name for p in admin.glob("*.sh")} == {"install_profile.sh", "slurm_cluster.sh"}
    assert all((REPO / "profiles" / p / "config.yaml").is_file() for p in ("local", "slurm"))


def test_every_rule_is_either_a_cluster_job_or_a_local_rule():
    """On a cluster, a rule that runs a model or an SAE is submitted and every other rule runs on
    the login node (`localrules`): a new rule must be put on one side."""
    text = "\n".join(p.read_text() for p in [*(REPO / "rules").glob("*.smk"), REPO / "Snakefile"])
    rules = set(re.findall(r"^rule (\w+):", text, re.M)) | set(
        re.findall(r"^use rule \w+ as (\w+)", text, re.M))
    block = re.search(r"^localrules:\n((?:    \w+,\n)+)", text, re.M)
    local = set(re.findall(r"\w+", block.group(1)))
    # hub downloads: local unless the config says the compute nodes are online
    hub = re.search(r"^if CONFIG\[\"hub_downloads\"\] == \"local\":\n\n    localrules:\n"
                    r"((?:        \w+,\n)+)", text, re.M)
    downloads = set(re.findall(r"\w+", hub.group(1)))
    assert downloads == {"fetch_model", "fetch_sae"}
    assert not (local | downloads) & gpu_rules() and not local & downloads
    assert local | downloads | gpu_rules() == rules


def test_every_model_job_reads_the_hub_cache_offline():
    """The script of every rule that loads a model or an SAE switches the hub library offline
    first (fetch_model / fetch_sae downloaded what it loads): a new one cannot forget it."""
    text = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    scripts = {}
    for block in re.split(r"\n(?=rule |use rule )", text):
        m = re.match(r"rule (\w+)", block)
        s = re.search(r'script:\s*\n\s*"\.\./workflow_scripts/([^"]+)"', block)
        if m and s:
            scripts[m.group(1)] = s.group(1)
    gpu = gpu_rules() - {"evaluate_tuned"}  # runs evaluate_base's script
    assert gpu <= set(scripts)
    for rule in gpu:
        body = (REPO / "workflow_scripts" / scripts[rule]).read_text()
        first_call = body.index("setup_logging(snakemake.log[0])")
        assert "\nhub_offline()" in body[first_call:], rule
        assert body.index("\nhub_offline()") < body.index("snakemake.input"), rule


def test_every_gpu_rule_takes_a_gpu_on_slurm():
    """On SLURM every GPU rule goes to the GPU partition with one GPU and two CPUs: a new GPU
    rule cannot be forgotten in the profile (the login node that plans may have no GPU, so the
    profile, not the rule, says so)."""
    import yaml

    res = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    rules = gpu_rules()
    missing = {r for r in rules if "gpu" not in res["set-resources"].get(r, {})}
    assert not missing, f"profiles/slurm: no gpu resource for {sorted(missing)}"
    assert {r: res["set-threads"].get(r) for r in rules} == {r: 2 for r in rules}


def test_every_gpu_rule_plans_its_threads_and_gpu_unit_from_the_device():
    """Locally a GPU rule takes the device's share (``model_threads``, ``gpu_units``): a rule
    with fixed threads would keep CPU-only machines running one model job at a time."""
    text = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    for block in re.split(r"\n(?=rule |use rule )", text):
        m = re.match(r"rule (\w+)", block)
        if m and m.group(1) in gpu_rules():
            threads = "FINETUNE_THREADS" if m.group(1) == "finetune" else "model_threads"
            assert f"threads: {threads}" in block and "gpu=gpu_units" in block, m.group(1)
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
