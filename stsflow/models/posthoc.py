"""Post-hoc pairs (``posthoc.<label>``): a tuned model trained elsewhere, imported as a checkpoint
of the run ``posthoc_<label>`` so that every later job (true shift, evaluation, Δ, scores,
correlations, report) reads it exactly as it reads a run fine-tuned here.

* ``peft``: the adapter's files are copied and recorded as a LoRA adapter of the base's prepared
  directory, like stsflow's own LoRA checkpoints: jobs merge it into the base when they load it,
  and refuse a base whose identity changed since the import.
* ``local``, ``hf``: the directory records where the tuned model is (a local directory, or a
  hub id pinned to the commit downloaded), as a prepared model's does: no weights are copied.
* ``gguf``: the file is dequantised to float32 and saved in the directory (safetensors).

Before anything is written, the tuned model is checked against the base: the same architecture
and shape (a true shift compares residual streams dimension by dimension, with the base's SAE)
and the same tokenizer (the same queries must be the same tokens). A mismatch is refused with
the config field named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stsflow.finetune import formats
from stsflow.finetune.checkpoint import META_FILE
from stsflow.io.files import atomic_dir, sha256, write_json

# config.json fields that must agree for the residual streams to be comparable
SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def source_kind(tuned: dict) -> str:
    """Which of hf, local, peft, gguf a ``posthoc.<label>.tuned`` entry is."""
    (kind,) = tuned  # the schema allows exactly one
    return kind


def _text_config(cfg) -> dict:
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return d.get("text_config") or d


def compatibility_problems(field: str, base_cfg, base_tok, tuned_cfg, tuned_tok) -> list[str]:
    """Why the tuned model cannot be compared with the base (empty when it can): architecture,
    shape and tokenizer (vocabulary, special tokens, chat template)."""
    problems = []
    b, t = _text_config(base_cfg), _text_config(tuned_cfg)
    arch_b = (getattr(base_cfg, "architectures", None) or [None])[0]
    arch_t = (getattr(tuned_cfg, "architectures", None) or [None])[0]
    if arch_b and arch_t and arch_b != arch_t:
        problems.append(f"architecture {arch_t} differs from the base's {arch_b}")
    for key in SHAPE_FIELDS:
        if b.get(key) != t.get(key):
            problems.append(f"config {key} {t.get(key)!r} differs from the base's {b.get(key)!r}")
    if base_tok.get_vocab() != tuned_tok.get_vocab():
        problems.append("the tokenizer's vocabulary differs from the base's")
    for name in ("bos_token", "eos_token"):
        if getattr(base_tok, name, None) != getattr(tuned_tok, name, None):
            problems.append(f"the tokenizer's {name} {getattr(tuned_tok, name, None)!r} differs "
                            f"from the base's {getattr(base_tok, name, None)!r}")
    if getattr(base_tok, "chat_template", None) != getattr(tuned_tok, "chat_template", None):
        problems.append("the tokenizer's chat template differs from the base's")
    return [f"{field}: {p}" for p in problems]


def _check(field: str, base_cfg, base_tok, tuned_cfg, tuned_tok) -> None:
    problems = compatibility_problems(field, base_cfg, base_tok, tuned_cfg, tuned_tok)
    if problems:
        raise ValueError(
            "; ".join(problems) + ". A post-hoc pair compares the tuned model's residual stream "
            "with the base's, dimension by dimension, on the same tokens. Fix: name the tuned "
            "model's own base under models: (and the pair's model:), or a tuned model of this "
            "base")


def import_tuned(tuned: dict, base_dir: Path | str, outdir: Path | str, meta: dict,
                 field: str = "posthoc.<label>.tuned") -> dict:
    """Write the checkpoint directory ``outdir`` of a post-hoc pair's tuned model (``tuned``: the
    pair's ``tuned`` entry), trained from the prepared base model at ``base_dir``. ``meta`` is
    recorded with the source; ``field`` names the config entry in errors. Returns the metadata
    written (``stsflow_meta.json``)."""
    from transformers import AutoTokenizer

    from stsflow.models.load import MANIFEST, load_tokenizer, local_fingerprint, model_info

    kind = source_kind(tuned)
    spec = tuned[kind]
    base_tok, base_cfg = load_tokenizer(base_dir)
    outdir = Path(outdir)
    base_info = model_info(base_dir)
    if (base_info.get("kind") == "gguf_package") != (kind == "gguf"):
        # a true shift then also measures the difference between quantised and float weights
        warning = (f"{field}: the base model is {'a' if kind == 'gguf' else 'not a'} GGUF "
                   f"file's dequantised weights and the tuned model is "
                   f"{'not' if kind != 'gguf' else 'one'}: if one was quantised and the other "
                   "not, the true shift and Δ include the quantisation error")
        meta = {**meta, "warnings": [warning]}
        import logging

        logging.getLogger("stsflow").warning(warning)
    meta = {**meta, "imported": {"kind": kind, **spec},
            "base": {k: base_info[k] for k in ("kind", "id", "package", "file", "revision",
                                               "sha256") if k in base_info}}
    if kind == "peft":
        src = Path(spec["path"])
        missing = [f for f in ADAPTER_FILES if not (src / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{field}.peft.path: {src} lacks {', '.join(missing)}. Fix: point it at a PEFT "
                "adapter saved with save_pretrained (safetensors)")
        adapter = json.loads((src / "adapter_config.json").read_text())
        if adapter.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"{field}.peft.path: a {adapter.get('peft_type')} adapter; only "
                             "LoRA adapters are merged. Fix: merge it and give the merged model "
                             "as local:")
        has_tok = any((src / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
        tok = AutoTokenizer.from_pretrained(src) if has_tok else base_tok
        # the adapter's tensors must fit the base's layers: PEFT would skip the weights of a
        # layer the base lacks, without a word, and load the rest
        problems = adapter_problems(f"{field}.peft.path", src, base_cfg)
        if problems:
            raise ValueError("; ".join(problems) + ". Fix: give an adapter trained on this base "
                             "model")
        _check(field, base_cfg, base_tok, base_cfg, tok)
        meta["imported"]["sha256"] = sha256(src / "adapter_model.safetensors")
        meta["imported"]["base_model_name_or_path"] = adapter.get("base_model_name_or_path")
        # as stsflow's own LoRA checkpoints: the base's prepared directory, relative to the
        # checkpoint, whose identity (meta["base"]) is checked on every load
        meta.update(adapter=True, adapter_type=formats.LORA, base_dir=_rel(base_dir, outdir))
        if (fingerprint := local_fingerprint(base_dir)) is not None:
            meta["fingerprint"] = fingerprint
        with atomic_dir(outdir, replace=False) as tmp:
            for f in ADAPTER_FILES:
                shutil.copy2(src / f, tmp / f)
            tok.save_pretrained(tmp)
            _write_meta(tmp, meta)
        return meta
    # a whole model: the directory says where to load it from, as a prepared model's does
    # (stsflow.models.load), so no weights are copied; a GGUF file is dequantised into it
    with atomic_dir(outdir, replace=False) as tmp:
        try:
            manifest, tok, cfg = _locate(kind, spec, tmp, base_tok)
        except (OSError, ValueError) as exc:  # a missing file, an unreadable model, the hub
            # the same kind of error with the field named (hub errors, whose constructors take
            # other arguments, become the builtin they derive from)
            kind_of = next(k for k in (FileNotFoundError, ValueError, OSError)
                           if isinstance(exc, k))
            raise kind_of(f"{field}.{kind}: {exc}") from exc
        _check(field, base_cfg, base_tok, cfg, tok)
        text = _text_config(cfg)
        manifest.update(architecture=(cfg.architectures or [type(cfg).__name__])[0],
                        n_layers=text["num_hidden_layers"], hidden_size=text["hidden_size"])
        meta["imported"].update({k: manifest[k] for k in ("revision", "sha256") if k in manifest})
        # the run's identity at the top, as a fine-tuned checkpoint's: the extraction and
        # evaluation metadata (jobs.common.model_identity) then name the run, not a bare model
        write_json(tmp / MANIFEST, {**manifest, **{k: meta[k] for k in ("method", "seed", "base")
                                                   if k in meta}, "posthoc": meta})
        _write_meta(tmp, meta)
    return meta


def adapter_problems(field: str, adapter_dir: Path | str, base_cfg) -> list[str]:
    """Why a PEFT LoRA adapter does not fit the base (empty when it does): each saved
    ``lora_A`` / ``lora_B`` matrix must belong to a linear layer of the base (built from its
    config on the meta device: no weights are read) with matching input / output size."""
    import re

    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        modules = dict(AutoModelForCausalLM.from_config(base_cfg).named_modules())
    problems = []
    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), "pt") as f:
        for key in f.keys():
            m = re.fullmatch(r"base_model\.model\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
            if not m:
                problems.append(f"{field}: tensor {key} is not a LoRA matrix of a linear layer")
                continue
            path, ab = m.groups()
            module = modules.get(path)
            if module is None or not hasattr(module, "in_features"):
                problems.append(f"{field}: the adapter adapts {path}, which the base has not "
                                "(as a linear layer)")
                continue
            shape = f.get_slice(key).get_shape()
            size, want = (shape[1], module.in_features) if ab == "A" else (shape[0],
                                                                            module.out_features)
            if size != want:
                problems.append(f"{field}: the adapter's lora_{ab} of {path} has size {size} "
                                f"where the base's layer has {want}")
        if not problems and not any(True for _ in f.keys()):
            problems.append(f"{field}: the adapter holds no tensor")
    return problems[:5] + ([f"{field}: and {len(problems) - 5} more"] if len(problems) > 5
                           else [])


def _rel(path: Path | str, outdir: Path) -> str:
    import os

    return os.path.relpath(Path(path).resolve(), Path(outdir).resolve())


def _write_meta(tmp: Path, meta: dict) -> None:
    # written last: a directory is a complete checkpoint iff it holds this file
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n",
                                 encoding="utf-8")


def _locate(kind: str, spec: dict, tmp: Path, base_tok):
    """(manifest, tokenizer, config) of a whole tuned model: where jobs load it from. A hub
    model is downloaded into the hub cache here (this job runs where the network is, as
    prepare_model does) and pinned to its commit; a local directory is loaded in place; a GGUF
    file is dequantised into ``tmp/weights``."""
    from transformers import AutoConfig, AutoTokenizer

    from stsflow.models.load import dequantised_gguf, directory_fingerprint

    if kind == "gguf":
        path = Path(spec["path"])
        model, tok = dequantised_gguf(path)
        model.save_pretrained(tmp / "weights")
        tok.save_pretrained(tmp / "weights")
        return ({"kind": "gguf", "path": "weights", "file": str(path.resolve()),
                 "sha256": sha256(path), "revision": None}, tok, model.config)
    if kind == "hf":
        from stsflow.io.hub import fetch_model

        got = fetch_model({"hf": spec})
        where, kw = spec["id"], {"revision": got["revision"]}
        manifest = {"kind": "hf", "id": spec["id"], "revision": got["revision"]}
    else:
        where, kw = str(Path(spec["path"]).resolve()), {}
        if not any(Path(where).glob("*.safetensors")):
            raise FileNotFoundError(
                f"{where}: no safetensors weights (stsflow loads safetensors only; pickled .bin "
                "weights can run code when loaded). Fix: save the model with save_pretrained")
        manifest = {"kind": "local", "path": where, "revision": None}
        # what identifies the weights in place (stsflow.models.load checks it on every load:
        # a directory overwritten after the import is refused, not silently read)
        manifest["fingerprint"] = directory_fingerprint(Path(where))
    has_tok = kind == "hf" or any((Path(where) / f).is_file()
                                  for f in ("tokenizer.json", "tokenizer_config.json"))
    # a directory saved without its tokenizer is read with the base's (then checked as equal)
    tok = AutoTokenizer.from_pretrained(where, **kw) if has_tok else base_tok
    return manifest, tok, AutoConfig.from_pretrained(where, **kw)
