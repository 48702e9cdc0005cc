"""Full fine-tuning across the devices of one node: PyTorch's FSDP2 (``fully_shard``), one
process per GPU, started by ``torch.distributed.run`` from the finetune job (``finetune.processes``).

Why FSDP2 directly and not through accelerate: accelerate turns FSDP on only for multi-accelerator
runs (on CPU processes it falls back to data parallel), so the CPU test with the gloo backend
would not run the sharded path that a GPU node runs. ``fully_shard`` is the same code on CUDA
(NCCL) and on CPU (gloo).

How a step is split (``rank_rounds``): every rank builds the same optimizer-step batch and the
same length-sorted micro-batches (``stsflow.finetune.train``); rank r takes micro-batches r,
r + P, r + 2P, … Each micro-batch contributes ``sum(CE) / n_response_tokens(step)`` as in one
process, times P: FSDP averages gradients over the ranks (a divide factor of 1 needs a reduction
gloo lacks), so the step's gradient is the one-process gradient up to float summation order (the
factor P and the division by P are exact for a power of two, within float rounding otherwise). FSDP runs collectives in every forward and
backward, so every rank runs the same number of rounds: a rank with fewer micro-batches runs
the step's first (shortest) one again with weight 0 (its gradient contribution is exactly
zero).

Each rank runs one CPU thread (``RANK_THREADS``), whatever the job's thread count: on a CPU
(the gloo test path) a run's weights then do not depend on the machine's cores."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

RANK_THREADS = 1


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_rounds(n_chunks: int, rank: int, size: int) -> list[tuple[int, float]]:
    """(micro-batch index, weight) per round for ``rank``: its share ``rank, rank + size, …`` with
    weight 1, padded with the step's first (shortest) micro-batch at weight 0 up to the largest
    share, so every rank runs ``ceil(n_chunks / size)`` rounds."""
    mine = list(range(rank, n_chunks, size))
    rounds = -(-n_chunks // size)
    return [(i, 1.0) for i in mine] + [(0, 0.0)] * (rounds - len(mine))


def shard(model) -> None:
    """FSDP2 on each decoder block, then on the whole model (embeddings, norm, head), over a mesh
    of the model's device type (a CPU run on a machine with a GPU stays on the CPU)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from stsflow.models.tap import decoder_layers

    mesh = init_device_mesh(next(model.parameters()).device.type, (world()[1],))
    for block in decoder_layers(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def full_norm(norm):
    """A norm computed over sharded parameters (a DTensor) as a plain tensor."""
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def all_sum(value: float) -> float:
    """``value`` summed over the ranks (itself outside a process group)."""
    import torch
    import torch.distributed as dist

    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)  # a CPU tensor: the group has gloo for CPU tensors beside NCCL (worker)
    return float(t[0])


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (itself outside a process group): how the ranks agree
    to stop at the same micro-batch when a signal reached some of them first."""
    import torch
    import torch.distributed as dist

    if world()[1] == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0] > 0)


def barrier() -> None:
    """Wait for every rank (nothing outside a process group)."""
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()


def full_state_dict(model) -> dict:
    """The whole model's state dict on the CPU, gathered from the shards (rank 0 holds it; the
    other ranks get an empty dict). A parameter shared under several names (tied embeddings) is
    one tensor under all of them, as in a one-process model: transformers finds tied weights by
    shared storage when it saves, and the gather returns one copy per name."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                 cpu_offload=True))
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if name in state and id(param) in first:
            state[name] = state[first[id(param)]]
        first.setdefault(id(param), name)
    return state


# -------------------------------------------------------------------------- starting the ranks

# seconds torch.distributed.run leaves the ranks, once it passed them a SIGTERM, to checkpoint
# and exit before it kills them (its default, 30 s, can be shorter than writing a large model's
# shards); the cluster's own kill after its grace time comes first when that is shorter
SHUTDOWN_TIMEOUT_S = 900


def launch(processes: int, job: dict, log=print) -> None:
    """Run ``worker`` in ``processes`` ranks on this node (``torch.distributed.run --standalone``)
    with the finetune job's arguments ``job`` (JSON); raise when a rank fails. A SIGTERM sent to
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
        cmd = [sys.executable, "-m", "stsflow.finetune.distributed", "launch", "--standalone",
               f"--nproc-per-node={processes}", f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}",
               "-m", "stsflow.finetune.distributed", str(spec)]
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
    run the finetune job, which trains its shard and lets rank 0 save."""
    import torch
    import torch.distributed as dist

    stop_with_parent()

    from stsflow.config.settings import CheckpointSettings, FinetuneSettings, ModelSettings
    from stsflow.jobs import validate
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
        try:
            validate.finetune(job["model_dir"], ModelSettings.from_config(job["model"]),
                              job["sft_items"], FinetuneSettings(**job["recipe"]),
                              job["outdir"], job["history_out"], threads=RANK_THREADS,
                              inputs=job.get("inputs"),
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
