"""Resuming interrupted training: checkpoints beside a job's output, the stop signal, the RNGs.

A training job (fine-tuning, SAE training) that the cluster stops (preemption, its time limit, a
lost node, a kill) resumes on its rerun or SLURM retry from its last complete checkpoint instead
of step 0, and ends with the weights an uninterrupted run ends with.

* **Where.** In ``<output>.resume/`` beside the job's output, never inside it: Snakemake deletes
  a failed job's outputs, and those of a job it reruns, before the job runs again. One directory
  per checkpoint, ``step-<n>``, holding ``resume.json`` (the step, the run's material, what the
  method records there) and the method's state.
* **Complete or absent.** A checkpoint is written into ``step-<n>.partial``, synced, and renamed
  into place (``resume.json`` is written last); anything else found there when a job starts is a
  checkpoint that was being written when its job died: it is removed, never read.
* **The same run only.** ``resume.json`` records the run's *material*: the recipe, the base
  model's identity, the inputs' hashes, a hash of the training examples' tokens, the package
  versions. A checkpoint whose material differs from the starting job's is discarded and the
  differing keys logged: a changed recipe never resumes from an old state.
* **When.** Every ``every`` steps (``finetune.checkpoint_every``; null: ``ceil(total / 10)``,
  about ten per run, so that a kill loses at most a tenth of a run and checkpointing costs ten
  writes whatever the scale; 0: none), and when SIGTERM arrives (SLURM sends it at preemption
  and at the time limit): the loop stops where its state can be saved, checkpoints, and the job
  fails (``Interrupted``) so that the retry resumes. The last step is not checkpointed: the job
  writes its output right after. Once that output is written the directory is removed, unless
  the run keeps its checkpoints (then every one is kept).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from stsflow.io.files import _fsync_path as _fsync
from stsflow.io.files import _fsync_tree, read_json

CHECKPOINTS_PER_RUN = 10
META = "resume.json"
_NAME = re.compile(r"step-(\d{8})")


class Interrupted(RuntimeError):
    """A run stopped by SIGTERM after saving its checkpoint: its job fails, so that the rerun
    or SLURM retry resumes it."""


def beside(output) -> Path:
    """The resume directory of a job's output (a sibling, which Snakemake never deletes)."""
    return Path(f"{output}.resume")


def interval(every: int | None, total: int) -> int | None:
    """Steps between checkpoints: ``every``; None: about ``CHECKPOINTS_PER_RUN`` per run; 0:
    none (None returned)."""
    if every is None:
        return max(1, math.ceil(total / CHECKPOINTS_PER_RUN))
    return int(every) or None


def digest(obj) -> str:
    """sha256 of a JSON-able object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def identity(path) -> str:
    """What identifies an input: a file's sha256; a directory's, that of its top-level JSON
    files (the identity stsflow records in each directory it writes: a prepared model's or
    SAE's manifest, a checkpoint's metadata)."""
    from stsflow.io.files import sha256

    path = Path(path)
    if path.is_file():
        return sha256(path)
    return digest({p.name: sha256(p) for p in sorted(path.glob("*.json"))})


# ----------------------------------------------------------------------------- RNG states


def rng_state() -> dict:
    """Every RNG a training step may draw from: Python's, numpy's global one, torch's CPU
    generator and, where CUDA is in use, each device's."""
    import numpy as np
    import torch

    cuda = (torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- the signal


class StopSignal:
    """SIGTERM noted rather than obeyed at once: ``requested`` turns true and the training loop
    stops where its state can be saved. Installed for the ``with`` block (in the main thread;
    elsewhere, or not ``enabled``, it never fires), the previous handler restored after it."""

    def __init__(self, enabled: bool = True):
        self.requested, self.enabled = False, enabled
        self._previous = None

    def _note(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> StopSignal:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._note)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class Resume:
    """How a job checkpoints: its resume directory (``beside(output)``), the material its state
    depends on (the job's part; the trainer adds its examples), ``every`` and ``keep``
    (``finetune.checkpoint_every``, ``finetune.keep_checkpoints``)."""

    root: Path
    material: dict
    every: int | None = None
    keep: bool = False
    log: object = field(default=None, repr=False)

    def open(self, total: int, what: str, log=None, **material) -> Checkpoints:
        """The checkpoints of a run of ``total`` steps (``what`` names it in the log lines,
        ``log`` writes them), its ``material`` completed by the trainer's."""
        return Checkpoints(self.root, {**self.material, **material}, interval(self.every, total),
                           total, self.keep, what,
                           log or self.log or logging.getLogger("stsflow").info)

    def finish(self) -> None:
        """The job's output is written: its checkpoints go, unless the run keeps them."""
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def _plain(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def differences(old: dict, new: dict) -> list[str]:
    """The keys (one level into dicts: ``recipe.lr``) whose values differ."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{kk}" for kk in sorted(set(a) | set(b)) if a.get(kk) != b.get(kk)]
        else:
            out.append(k)
    return out


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class CheckpointUnreadable(RuntimeError):
    """A run's last checkpoint could not be read back; its checkpoints are gone (``reading``)."""


class Checkpoints:
    """The checkpoints of one run: ``latest`` (the one to resume from, after removing partial
    and foreign ones), ``due`` (whether a step is checkpointed), ``save``. In a sharded run
    every rank calls each of them: rank 0 alone names, renames and removes directories, and the
    ranks wait for each other around it."""

    def __init__(self, root: Path, material: dict, every: int | None, total: int, keep: bool,
                 what: str, log):
        self.root, self.material = Path(root), _plain(material)
        self.every, self.total, self.keep, self.what, self.log = every, total, keep, what, log
        self.saved: int | None = None  # the step whose state is on disk

    # --------------------------------------------------------------------- reading
    def _complete(self) -> list[tuple[int, Path]]:
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir()
                 if (m := _NAME.fullmatch(p.name)) and (p / META).is_file()]
        return sorted(found)

    def latest(self) -> tuple[int, Path, dict] | None:
        """(step, directory, its ``resume.json``) of the last complete checkpoint of this run,
        or None. Partial checkpoints, and those of another recipe or input, are removed (and
        said so in the log)."""
        from stsflow.finetune.distributed import barrier, world

        if world()[0] == 0 and self.root.is_dir():
            complete = self._complete()
            for p in sorted(self.root.iterdir()):
                if p not in {d for _, d in complete}:
                    if not p.is_dir() or any(p.iterdir()):  # not an empty working directory
                        self.log(f"{self.what}: removing {p}, a partial checkpoint (its job "
                                 "stopped while writing it): it is never read")
                    _remove(p)
            if complete:
                meta = read_json(complete[-1][1] / META)
                if meta.get("material") != self.material:
                    changed = differences(meta.get("material") or {}, self.material)
                    self.log(f"{self.what}: the checkpoint in {complete[-1][1]} is not this "
                             f"run's (changed: {', '.join(changed) or 'unknown'}); it is "
                             "removed and training starts from step 0")
                    for _, d in complete:
                        _remove(d)
        barrier()
        complete = self._complete()
        if not complete:
            return None
        step, path = complete[-1]
        self.saved = step
        return step, path, read_json(path / META)

    @contextlib.contextmanager
    def reading(self):
        """Around reading the last checkpoint back (``latest`` and the trainer's load): a
        checkpoint that cannot be read (damaged after it was written: a full disk, a node lost)
        is removed with every other checkpoint of the run, and the job stops saying so. Its
        next attempt (SLURM's retry, or the same command again) starts from step 0, instead of
        failing on the same file again."""
        from stsflow.finetune.distributed import barrier, world

        try:
            yield
        except (OSError, ValueError, RuntimeError, EOFError, KeyError) as err:
            if world()[0] == 0:
                _remove(self.root)
            barrier()
            reason = " ".join(str(err).split())[:400]
            self.log(f"{self.what}: a checkpoint in {self.root} cannot be read ({reason}); "
                     "the run's checkpoints are removed")
            raise CheckpointUnreadable(
                f"{self.what}: a checkpoint in {self.root} cannot be read ({reason}). It was "
                "removed with the run's other checkpoints. Fix: run the job again (under SLURM "
                "its retry does; locally, the same snakemake command): it starts from step "
                "0") from err

    def resumed(self, step: int, path: Path) -> None:
        """The one line that says a run resumes, and from where."""
        self.log(f"{self.what}: resuming from step {step}/{self.total}, checkpoint {path}")

    # --------------------------------------------------------------------- writing
    def due(self, step: int) -> bool:
        return bool(self.every) and 0 < step < self.total and step % self.every == 0

    def save(self, step: int, write, info: dict | None = None) -> Path:
        """Checkpoint ``step``: ``write(directory)`` writes the state (in every rank), then
        ``resume.json`` with ``info``; renamed into place once complete. Older checkpoints
        are removed unless kept."""
        from stsflow.finetune.distributed import barrier, world

        rank = world()[0]
        final = self.root / f"step-{step:08d}"
        tmp = final.with_name(final.name + ".partial")
        start = time.perf_counter()
        if rank == 0:
            _remove(tmp)
            tmp.mkdir(parents=True)
        barrier()
        try:
            write(tmp)
            barrier()
            if rank == 0:
                meta = {"step": step, "total": self.total, "material": self.material,
                        **(info or {})}
                (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
                _fsync_tree(tmp)
                _remove(final)
                os.rename(tmp, final)
                _fsync(self.root)
                if not self.keep:
                    for s, p in self._complete():
                        if s != step:
                            _remove(p)
        except BaseException:
            if rank == 0:
                _remove(tmp)
            raise
        barrier()
        self.saved = step
        if rank == 0:
            self.log(f"{self.what}: checkpoint of step {step}/{self.total} in {final} "
                     f"({_size(final) / 1e6:.1f} MB, {time.perf_counter() - start:.2f} s)")
        return final


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
