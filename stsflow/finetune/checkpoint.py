"""Fine-tuned checkpoints written atomically with their metadata (method, seed, recipe, base),
and the checks that a checkpoint is complete before anything reads it.

A full fine-tune is saved as a whole model. A PEFT (LoRA) fine-tune is saved as its adapter
alone (``adapter_config.json``, ``adapter_model.safetensors``, the tokenizer) with the path of its
base model's prepared directory, relative to the checkpoint, and the base's identity in the
metadata: ``stsflow.models.load`` merges it into that base when a job loads it, and refuses a
base whose identity changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from stsflow.io.files import atomic_dir

META_FILE = "stsflow_meta.json"


# ----------------------------------------------------------------------------- checkpoints


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def plain(model):
    """The plain transformers model of a trained module: a PEFT model's adapter merged into its
    base (in place), any other model as it is."""
    return model.merge_and_unload() if is_peft(model) else model


def save_checkpoint(model, tokenizer, outdir: Path | str, meta: dict,
                    base_dir: Path | str | None = None) -> Path:
    """Save ``model`` (safetensors), ``tokenizer`` and ``stsflow_meta.json`` into ``outdir``.
    A PEFT model saves its adapter only and needs ``base_dir``, the prepared directory of the
    model it was trained from (recorded relative to ``outdir`` as ``base_dir``, with
    ``adapter: true``).

    Atomic: everything is written into ``<outdir>.tmp-<pid>``, fsynced, and renamed onto
    ``outdir``; on any error the temporary directory is removed. ``outdir`` must not exist
    (``FileExistsError``): the workflow deletes stale outputs itself. The metadata file is written
    last, so a directory is a complete checkpoint iff it contains ``stsflow_meta.json``
    (``is_complete_checkpoint``)."""
    outdir = Path(outdir)
    if is_peft(model):
        from stsflow.models.load import local_fingerprint

        if base_dir is None:
            raise ValueError("a PEFT adapter is saved with base_dir, the model it was trained from")
        meta = {**meta, "adapter": True,
                "base_dir": os.path.relpath(Path(base_dir).resolve(), outdir.resolve())}
        if (fingerprint := local_fingerprint(base_dir)) is not None:
            meta["fingerprint"] = fingerprint
    with atomic_dir(outdir, replace=False) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return outdir


def is_complete_checkpoint(path: Path | str) -> bool:
    return (Path(path) / META_FILE).is_file()


def read_checkpoint_meta(path: Path | str) -> dict:
    return json.loads((Path(path) / META_FILE).read_text(encoding="utf-8"))
