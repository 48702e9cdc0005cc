"""Fine-tuned checkpoints written atomically with their metadata (method, seed, recipe, base),
and the checks that a checkpoint is complete before anything reads it."""

from __future__ import annotations

import json
from pathlib import Path

from stsflow.io.files import atomic_dir

META_FILE = "stsflow_meta.json"


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(model, tokenizer, outdir: Path | str, meta: dict) -> Path:
    """Save ``model`` (safetensors), ``tokenizer`` and ``stsflow_meta.json`` into ``outdir``.

    Atomic: everything is written into ``<outdir>.tmp-<pid>``, fsynced, and renamed onto
    ``outdir``; on any error the temporary directory is removed. ``outdir`` must not exist
    (``FileExistsError``): the workflow deletes stale outputs itself. The metadata file is written
    last, so a directory is a complete checkpoint iff it contains ``stsflow_meta.json``
    (``is_complete_checkpoint``)."""
    outdir = Path(outdir)
    if hasattr(model, "merge_and_unload"):
        raise TypeError("save_checkpoint got a PEFT model; merge it first (merge_and_unload)")
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
