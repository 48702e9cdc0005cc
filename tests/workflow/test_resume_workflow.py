"""A workflow killed during fine-tuning (``kill -9`` of Snakemake and its jobs) is unlocked and
run again: the fine-tuning resumes from its last checkpoint, says so in its log, and the STS,
observed and correlation tables are byte-identical to those of a run that was never killed."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time
from collections import Counter

import pytest
from workflow_helpers import (planned_jobs, snakemake, snakemake_started, tiny_config,
                              write_config)

from stsflow.io.manifest import verify

pytestmark = pytest.mark.slow
TABLES = ("tables/tiny/arith/sts.parquet", "tables/tiny/arith/sts.csv",
          "tables/tiny/arith/observed.parquet", "tables/tiny/arith/observed.csv",
          "reports/tiny/arith/correlations.parquet")
FT_LOG = "results/logs/finetune/tiny/arith/lora-s0.log"


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project(tiny_model_dir, workdir):
    cfg = tiny_config(workdir, tiny_model_dir, observed=False, finetune=True)
    # 12 items, 4 a step, 20 epochs: 60 steps, a checkpoint every 5
    cfg["finetune"].update(epochs=20, checkpoint_every=5)
    write_config(workdir, cfg)
    return cfg


def test_killed_workflow_resumes_fine_tuning_to_identical_tables(tiny_model_dir, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for d in (clean, killed):
        d.mkdir()
    project(tiny_model_dir, clean)
    cfg = project(tiny_model_dir, killed)
    snakemake(clean, "--cores", "2")

    proc = snakemake_started(killed, "--cores", "2")
    log = killed / FT_LOG
    deadline = time.monotonic() + 900
    while not (log.exists() and "finetune: checkpoint of step" in log.read_text()):
        assert proc.poll() is None, "the workflow ended before fine-tuning checkpointed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the workflow and its running jobs
    proc.wait(timeout=60)
    assert not (killed / "results/finetune/tiny/arith/lora-s0.history.parquet").exists()
    saved = sorted((killed / "results/finetune/tiny/arith/lora-s0.resume").glob("step-*"))
    assert saved, "no checkpoint survived the kill"

    snakemake(killed, "--unlock")
    snakemake(killed, "--cores", "2")
    text = log.read_text()
    assert f"finetune: resuming from step {int(saved[-1].name[5:])}/60, checkpoint " in text
    assert not (killed / "results/finetune/tiny/arith/lora-s0.resume").exists()
    for rel in TABLES:
        assert sha(clean / "results" / rel) == sha(killed / "results" / rel), rel
    assert verify(killed / "results") == []
    # how a run checkpoints is no parameter of it: editing it reruns no fine-tuning, only the
    # report and the manifest, which record the whole config
    cfg["finetune"].update(checkpoint_every=0, keep_checkpoints=True)
    write_config(killed, cfg)
    assert planned_jobs(killed) == Counter(report=1, manifest=1, all=1)
    shutil.rmtree(clean)
