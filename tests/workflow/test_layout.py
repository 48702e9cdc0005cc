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
