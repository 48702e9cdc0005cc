"""Helpers to kill a job's process mid-run and watch what it leaves: the fault tests of
resumable training (tests/finetune/test_resume.py, tests/sae/test_sae_resume.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

CHECKPOINT_LINE = re.compile(r"checkpoint of step (\d+)/(\d+) in ")
RESUME_LINE = re.compile(r"resuming from step (\d+)/(\d+), checkpoint (\S+)")


def start(runner: str, spec: dict, workdir: Path, name: str) -> subprocess.Popen:
    """``runner`` (Python code that reads the JSON spec named by its first argument and runs a
    job) in a subprocess, in a session of its own: a signal to its process group reaches the
    job's processes (not the ranks torch.distributed.run starts in sessions of their own)."""
    path = workdir / f"{name}.{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
               STSFLOW_TEST_JOB=str(path))
    return subprocess.Popen([sys.executable, "-c", runner, str(path)], cwd=workdir, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def processes_of(proc: subprocess.Popen) -> list[int]:
    """The live processes started for one job (ranks included), found by the environment
    variable every one of them inherits."""
    tag = f"STSFLOW_TEST_JOB={proc.args[-1]}".encode()
    found = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{p}/stat", "rb") as f:
                if f.read().split(b") ")[-1][:1] == b"Z":  # a zombie is gone
                    continue
        except OSError:
            continue
        if tag in env:
            found.append(int(p))
    return found


def finish(proc: subprocess.Popen, log: Path) -> str:
    """Wait for the job to end; its log. It must succeed."""
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-4000:]
    return log.read_text()


def interrupt(proc: subprocess.Popen, log: Path, sig: signal.Signals) -> str:
    """Send ``sig`` to the job's process group once its log shows a checkpoint; wait until the
    job and every process it started have ended; its log. SIGKILL as ``kill -9`` of a workflow
    kills it, SIGTERM as SLURM stops a job (then the job must say it stopped, and fail)."""
    deadline = time.monotonic() + 900
    while not (log.exists() and CHECKPOINT_LINE.search(log.read_text())):
        assert proc.poll() is None, ("the job ended before its first checkpoint:\n"
                                     + proc.stderr.read()[-4000:])
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=900)
    # no process of the job outlives it: a sharded run's ranks are stopped with their launcher
    # (finetune.distributed.stop_with_parent), and do not train on unseen
    while processes_of(proc):
        assert time.monotonic() < deadline, processes_of(proc)
        time.sleep(0.1)
    text = log.read_text()
    assert proc.returncode != 0, "the job finished before the signal reached it"
    if sig == signal.SIGTERM:  # it stopped itself, after a checkpoint, and failed
        assert "stopped by SIGTERM" in text and "Interrupted" in err, err[-4000:]
    return text


def check_resumed(killed: str, resumed: str, total: int, root: Path) -> None:
    """The rerun's log says it resumed from the killed run's last checkpoint, in ``root``."""
    saved = [int(m.group(1)) for m in CHECKPOINT_LINE.finditer(killed)]
    m = RESUME_LINE.search(resumed)
    assert m, resumed
    assert int(m.group(1)) == saved[-1] and int(m.group(2)) == total
    assert Path(m.group(3)) == root / f"step-{saved[-1]:08d}"
