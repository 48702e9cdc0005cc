"""`snakemake --profile slurm` on a real SLURM cluster (started by .ci/run with
profiles/admin/slurm_cluster.sh): every job that runs a model or an SAE goes through sbatch and
nothing else does (the rest are local rules), every job finishes, and the outputs equal a local
run's. Skipped, with the reason, where no SLURM is reachable."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from slurm_harness import (run_with_profile, slurm_available, submitted_job_count,
                           submitted_per_rule)
from workflow_helpers import gpu_rules, planned_jobs, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
COMPARED = ("tables/tiny/arith/sts.parquet", "tables/tiny/arith/sts.csv",
            "reports/tiny/arith/correlations.parquet")


def test_profile_slurm_runs_the_workflow_through_sbatch(tiny_model_dir, tmp_path):
    ok, why = slurm_available()
    if not ok:
        pytest.skip(f"no SLURM cluster reachable: {why}")
    # The literal command resolves `slurm` in the user's Snakemake config directory: install the
    # link the way `make venv` does, into a config home of this test's own.
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    subprocess.run(["bash", str(REPO / "profiles/admin/install_profile.sh"), "slurm"],
                   check=True, capture_output=True, text=True, env=env)
    assert (tmp_path / "config/snakemake/slurm").resolve() == REPO / "profiles/slurm"
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    for d in (on_slurm, local):
        d.mkdir()
        write_config(d, tiny_config(d, tiny_model_dir))
    planned = planned_jobs(on_slurm)
    proc = run_with_profile(on_slurm, REPO / "Snakefile", on_slurm / "config.yaml", "slurm",
                            timeout_s=1500, env=env)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-6000:])
    assert "Using profile slurm" in proc.stdout + proc.stderr
    # Every job that runs a model or an SAE went to sbatch, and nothing else: the reductions,
    # tables and reports are local rules.
    on_gpu = {rule: n for rule, n in planned.items() if rule in gpu_rules()}
    assert on_gpu and set(planned) - set(on_gpu)
    assert submitted_per_rule(on_slurm) == on_gpu
    assert submitted_job_count(on_slurm) == sum(on_gpu.values())
    assert planned_jobs(on_slurm) == {}  # finished: nothing left to do
    print(f"SLURM: {submitted_job_count(on_slurm)} jobs submitted with sbatch, "
          f"{sum(planned.values()) - sum(on_gpu.values())} local, all finished")

    # The local run gives the model jobs the threads the profile gives them on SLURM: float sums
    # in torch's kernels depend on the thread count, and the comparison below is byte for byte.
    threads = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())["set-threads"]
    snakemake(local, "--cores", "2", "--set-threads", *[f"{r}={n}" for r, n in threads.items()])
    for rel in COMPARED:
        a = hashlib.sha256((on_slurm / "results" / rel).read_bytes()).hexdigest()
        b = hashlib.sha256((local / "results" / rel).read_bytes()).hexdigest()
        assert a == b, rel
