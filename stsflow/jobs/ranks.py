"""The ranks of a sharded fine-tuning job (``finetune.processes`` > 1): the job starts them with
``launch`` (``torch.distributed.run``, tied to the job's process so that a kill reaches them),
each runs ``worker``, which joins the process group and runs the job again as one rank
(stsflow.finetune.distributed holds the training side: sharding, the rank's share of each
step, the gathered state)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from stsflow.finetune.distributed import RANK_THREADS

# seconds torch.distributed.run leaves the ranks, once it passed them a SIGTERM, to checkpoint
# and exit before it kills them (its default, 30 s, can be shorter than writing a large model's
# shards); the cluster's own kill after its grace time comes first when that is shorter
SHUTDOWN_TIMEOUT_S = 900


def launch(processes: int, job: dict, log=print) -> None:
    """Run ``worker`` in ``processes`` ranks on this node (``torch.distributed.run --standalone``)
    with the job ``job["job"]`` (``module:function``) and its arguments (JSON); raise when a
    rank fails. A SIGTERM sent to
    this process is passed on to the ranks (through torch.distributed.run), which checkpoint
    and stop (``stsflow.resume``); then ``resume.Interrupted`` is raised."""
    import signal
    import tempfile
    import threading

    from stsflow.resume import Interrupted

    with tempfile.TemporaryDirectory(prefix="stsflow-ft-") as tmp:
        spec = Path(tmp) / "job.json"
        spec.write_text(json.dumps(job, default=str))
        # torch.distributed.run through this module's "launch", which ties it to this process
        cmd = [sys.executable, "-m", "stsflow.jobs.ranks", "launch", "--standalone",
               f"--nproc-per-node={processes}", f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}",
               "-m", "stsflow.jobs.ranks", str(spec)]
        log(f"finetune: {processes} processes (FSDP): {' '.join(cmd)}")
        proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": str(RANK_THREADS)})
        stopped, previous = [], None

        def forward(signum, frame):
            stopped.append(signum)
            proc.send_signal(signum)

        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, forward)
        try:
            code = proc.wait()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if code and stopped:
            raise Interrupted(f"distributed fine-tuning stopped by SIGTERM (exit {code}); the "
                              "ranks checkpointed first: rerun to resume")
        if code:
            raise RuntimeError(f"distributed fine-tuning failed (exit {code}); each "
                               "failing rank's error is in the job's log above")


def stop_with_parent() -> None:
    """Have this process sent SIGTERM when its parent dies (Linux; elsewhere nothing): the
    launcher when the job's process is killed, a rank when the launcher is (torch.distributed.run
    starts each rank in a session of its own, out of reach of a kill of the job's process
    group). They then checkpoint and stop, rather than train on, unseen, beside the job's rerun."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request: nothing will send it
        os.kill(os.getpid(), signal.SIGTERM)


def worker(spec_path: str) -> None:
    """One rank: join the process group (NCCL on GPUs, gloo on CPUs), bind this rank's GPU, and
    run the job the spec names (the finetune job, which trains its shard and lets rank 0 save).
    The job is named, not imported here: the job module starts the ranks, so this module does
    not depend on it."""
    import importlib

    import torch
    import torch.distributed as dist

    stop_with_parent()

    from stsflow.config.settings import CheckpointSettings, FinetuneSettings, ModelSettings
    from stsflow.jobs.common import setup_logging
    from stsflow.resume import Interrupted

    job = json.loads(Path(spec_path).read_text())
    rank, size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    setup_logging(job.get("log"))
    if rank:  # rank 0 logs the run; the others their warnings and errors only
        logging.getLogger().setLevel(logging.WARNING)
    try:
        use_cuda = torch.cuda.is_available() and job["model"].get("device") != "cpu"
        if use_cuda:
            if torch.cuda.device_count() < size:
                raise RuntimeError(
                    f"finetune.processes: {size} processes, {torch.cuda.device_count()} GPU(s) "
                    "visible to the job. Fix: give the job that many GPUs (the finetune_sharded "
                    "rule's gpu resource), or set processes to the GPU count")
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        # NCCL for the model's tensors; gloo for the few CPU ones (the logged loss's sum)
        dist.init_process_group("cpu:gloo,cuda:nccl" if use_cuda else "gloo")
        module, _, name = job["job"].partition(":")
        run = getattr(importlib.import_module(module), name)
        try:
            run(job["model_dir"], ModelSettings.from_config(job["model"]),
                job["sft_items"], FinetuneSettings(**job["recipe"]), job["outdir"],
                job["history_out"], threads=RANK_THREADS, inputs=job.get("inputs"),
                checkpoints=CheckpointSettings(**job["checkpoints"]))
        finally:
            dist.destroy_process_group()
    except Interrupted as exc:  # stopped by SIGTERM, checkpointed: one line, no traceback
        logging.getLogger("stsflow").warning("rank %d of %d: %s", rank, size, exc)
        raise SystemExit(1) from None
    except Exception:
        logging.getLogger("stsflow").exception("rank %d of %d failed", rank, size)
        raise


if __name__ == "__main__":
    if sys.argv[1] == "launch":  # torch.distributed.run, stopped with the job's process
        from torch.distributed.run import main

        stop_with_parent()
        main(sys.argv[2:])
    else:
        worker(sys.argv[1])
