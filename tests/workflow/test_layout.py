"""workflow_scripts/ holds only the scripts that rules run; profiles/ holds Snakemake profiles
(a directory with config.yaml) and profiles/admin, the scripts that install a profile and run the
SLURM test cluster, which is not a profile."""

from __future__ import annotations

import re

from conftest import REPO


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


def test_every_gpu_rule_takes_a_gpu_in_both_profiles():
    """A rule that runs in the GPU environment (a model or an SAE on the device) is sent to the
    GPU partition on SLURM and takes the local profile's gpu unit: a new GPU rule cannot be
    forgotten in a profile."""
    import yaml

    text = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    gpu_rules = set()
    for block in re.split(r"\n(?=rule |use rule )", text):
        m = re.match(r"(?:rule (\w+)|use rule \w+ as (\w+))", block)
        if m and 'envs/gpu.yaml"' in block:
            gpu_rules.add(m.group(1) or m.group(2))
    assert {"extract", "encode", "gradients", "finetune"} <= gpu_rules
    for profile in ("local", "slurm"):
        res = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
        missing = {r for r in gpu_rules if "gpu" not in res["set-resources"].get(r, {})}
        assert not missing, f"profiles/{profile}: no gpu resource for {sorted(missing)}"
