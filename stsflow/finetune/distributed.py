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

import os

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
