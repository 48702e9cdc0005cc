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

from stsflow.finetune import formats
from stsflow.io.files import atomic_dir, read_json

META_FILE = "stsflow_meta.json"


# ----------------------------------------------------------------------------- checkpoints


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def plain(model):
    """The plain transformers model of a trained module: a PEFT model's adapter merged into its
    base (in place), any other model as it is."""
    return model.merge_and_unload() if is_peft(model) else model


def adapter_type(model) -> str | None:
    """The adapter format of a trained module (stsflow.finetune.formats): a PEFT model's LoRA,
    a model with selective maps, else None (the whole model is saved)."""
    from stsflow.finetune import selective

    if is_peft(model):
        return formats.LORA
    return formats.SELECTIVE_MAPS if selective.is_selective(model) else None


def _rel(path: Path | str, outdir: Path) -> str:
    return os.path.relpath(Path(path).resolve(), outdir.resolve())


def save_checkpoint(model, tokenizer, outdir: Path | str, meta: dict,
                    base_dir: Path | str | None = None, state_dict: dict | None = None) -> Path:
    """Save ``model`` (safetensors), ``tokenizer`` and ``stsflow_meta.json`` into ``outdir``.
    An adapter (a PEFT model's adapter, or sae_select's maps) is saved alone and needs
    ``base_dir``, the prepared directory of the model it was trained from (recorded relative to
    ``outdir`` as ``base_dir``, with ``adapter: true`` and ``adapter_type``). sae_select also
    records each site's SAE directory (relative to ``outdir``) and its manifest's sha256.

    Atomic: everything is written into ``.<outdir>.tmp`` beside it, fsynced, and renamed onto
    ``outdir``; on any error the temporary directory is removed. ``outdir`` must not exist
    (``FileExistsError``): the workflow deletes stale outputs itself. The metadata file is written
    last, so a directory is a complete checkpoint iff it contains ``stsflow_meta.json``
    (``is_complete_checkpoint``). ``state_dict``: the whole model's weights when ``model`` holds
    shards (FSDP, ``stsflow.finetune.distributed``)."""
    from stsflow.finetune import selective

    outdir = Path(outdir)
    kind = adapter_type(model)
    if kind is not None:
        from stsflow.models.load import local_fingerprint

        if base_dir is None:
            raise ValueError(f"a {kind} adapter is saved with base_dir, the model it was trained "
                             "from")
        meta = {**meta, "adapter": True, "adapter_type": kind,
                "base_dir": _rel(base_dir, outdir)}
        if (fingerprint := local_fingerprint(base_dir)) is not None:
            meta["fingerprint"] = fingerprint
    with atomic_dir(outdir, replace=False) as tmp:
        if kind == formats.SELECTIVE_MAPS:
            from stsflow.io.files import sha256
            from stsflow.sae.info import MANIFEST as SAE_MANIFEST

            sites = selective.save(model, tmp)
            meta["sites"] = [dict(s, sae_dir=_rel(s["sae_dir"], outdir),
                                  sae_manifest_sha256=sha256(Path(s["sae_dir"]) / SAE_MANIFEST))
                             for s in sites]
        else:
            # state_dict: a model sharded over processes, gathered (finetune.distributed)
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return outdir


def is_complete_checkpoint(path: Path | str) -> bool:
    return (Path(path) / META_FILE).is_file()


def read_checkpoint_meta(path: Path | str) -> dict:
    return read_json(Path(path) / META_FILE)
