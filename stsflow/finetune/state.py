"""The state of an SFT run at a step boundary, written into a checkpoint directory
(``stsflow.resume``) and read back: everything the rest of the run depends on.

* The trainable parameters and the optimizer's state, by parameter name, through
  ``torch.distributed.checkpoint``: in a sharded run (FSDP) each rank writes its own shards, in
  parallel, into the same directory; frozen parameters are not written (they are the base
  model's: a LoRA or sae_select checkpoint holds the adapter or the maps alone).
* The learning-rate schedule's state.
* Each rank's RNG states (``resume.rng_state``) as they were at the start of the next step.

The data order needs no state of its own: epoch e visits the examples in the permutation drawn
from ``numpy.random.default_rng([seed, e])``, so the step number is the position.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch

from stsflow.finetune.distributed import world

DCP_DIR = "dcp"
SCHEDULER = "scheduler.pt"


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # frozen parameters are the base model's; loading the trainable ones alone is not strict
    # about the others (``load`` checks that every trainable one was in the checkpoint)
    return StateDictOptions(ignore_frozen_params=True, strict=False)


def _states(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(model, optimizer, options=_options())
    # ignore_frozen_params still returns a frozen parameter tied to another name (a frozen LM
    # head that is the embedding: 113 MB of SmolLM2's, 3.7 GB of Gemma-2-9B's); a parameter
    # shared under two names is kept once
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {"model": {k: v for k, v in msd.items() if k in trainable}, "optim": osd}


@contextlib.contextmanager
def _quiet():
    """torch.distributed.checkpoint warns, in one process, that it runs in one process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def save(directory: Path, model, optimizer, scheduler, rng: dict) -> None:
    """Write the state of ``model``'s trainable parameters, ``optimizer`` and ``scheduler``, and
    this rank's ``rng`` (every rank calls it)."""
    import torch.distributed.checkpoint as dcp

    rank, size = world()
    with _quiet():
        dcp.save(_states(model, optimizer), checkpoint_id=str(directory / DCP_DIR),
                 no_dist=size == 1)
    if rank == 0:
        torch.save(scheduler.state_dict(), directory / SCHEDULER)
    torch.save(rng, directory / f"rng-{rank}.pt")


def load(directory: Path, model, optimizer, scheduler) -> dict:
    """Load the state ``save`` wrote into ``model``, ``optimizer`` and ``scheduler`` (in place);
    return this rank's RNG states (to set when the next step starts)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    rank, size = world()
    states = _states(model, optimizer)
    if not states["model"]:
        raise ValueError("the model to resume has no trainable parameter")
    # every trainable parameter and its optimizer state is read: one missing from the
    # checkpoint is an error of dcp.load, not a silently untrained parameter
    with _quiet():
        dcp.load(states, checkpoint_id=str(directory / DCP_DIR), no_dist=size == 1)
    set_state_dict(model, optimizer, model_state_dict=states["model"],
                   optim_state_dict=states["optim"], options=_options())
    scheduler.load_state_dict(torch.load(directory / SCHEDULER, weights_only=False))
    return torch.load(directory / f"rng-{rank}.pt", weights_only=False)
