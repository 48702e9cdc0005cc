"""A pretrained SAE (sae-lens registry, a folder of a hub repository, or a local sae-lens
directory) fetched, checked against the model and layer before its weights are loaded, and saved
as a prepared SAE with its quality figures (see the package docstring for the choices made)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from stsflow.config.checks import n_top_problems, sae_fit_problems
from stsflow.config.facts import registry_model, resid_layer, sae_cfg_facts
from stsflow.config.schema import ConfigError
from stsflow.io.files import atomic_dir, write_json
from stsflow.sae.encoder import SparseEncoder, export_checked
from stsflow.sae.info import (
    MANIFEST,
    _accepted_warnings,
    _declared_warnings,
    _rounded,
    quality_warnings,
    read_info,
)
from stsflow.sae.quality import evaluate_sae

if TYPE_CHECKING:
    from stsflow.config.settings import SaeSettings


def fetch_pretrained(spec: SaeSettings, *, layer: int, hidden_size: int, where: str,
                     n_top: list[int] | None = None):
    """(sae, info) of a registry, hub or local SAE, refused (ConfigError) unless it reads the residual
    stream after block ``layer`` with the model's hidden size; ``where`` is its config entry
    (``models.m.layers.L.sae``). A registry SAE's config is fetched and checked before its
    weights. ``n_top`` is checked against the width here because the registry YAML does not
    carry widths."""
    from sae_lens import SAE

    if spec.registry is not None:
        from sae_lens.loading.pretrained_sae_loaders import (
            load_sae_config_from_huggingface,
        )

        reg = spec.registry
        facts = sae_cfg_facts(load_sae_config_from_huggingface(reg["release"], reg["sae_id"]))
        field, declared = "registry.sae_id", {"registry": registry_model(reg["release"])}
        info = {"kind": "registry", **reg, "path": "."}
    elif spec.hub is not None:
        from stsflow.io.hub import hub_sae_dir

        path, commit = hub_sae_dir(spec.hub)
        if not (path / "cfg.json").is_file():
            raise ConfigError([f"{where}.hub.path: no sae-lens cfg.json in {spec.hub['path']} of "
                               f"{spec.hub['repo']}@{commit[:12]}. Fix: point it at the folder "
                               "holding the SAE's cfg.json and sae_weights.safetensors (sae-lens "
                               "format; other formats need the sae-lens registry's converters)"])
        facts = sae_cfg_facts(json.loads((path / "cfg.json").read_text()))
        field, declared = "hub.path", {}
        info = {"kind": "hub", "repo": spec.hub["repo"], "repo_path": spec.hub["path"],
                "revision": commit, "path": "."}
    else:
        path = Path(spec.local["path"]).resolve()
        facts = sae_cfg_facts(json.loads((path / "cfg.json").read_text()))
        field, declared = "local.path", {}
        info = {"kind": "local", "path": str(path)}
    problems = sae_fit_problems(where, field, facts, layer, hidden_size, "the prepared model",
                                spec.accept_hook)
    problems += n_top_problems(n_top or [], facts["width"], where)
    if problems:
        raise ConfigError(problems)
    if spec.registry is not None:
        sae = SAE.from_pretrained(reg["release"], reg["sae_id"])
    else:
        sae = SAE.load_from_disk(str(path))
    sae.eval()
    info.update(_describe(sae))
    info["hook_name"] = info.get("hook_name") or facts["hook_name"]
    if resid_layer(facts["hook_name"]) != layer:  # passed the check: accepted by accept_hook
        info["accepted_hook"] = spec.accept_hook
    declared["cfg.json"] = facts["model_name"]
    info["declared_model"] = {k: v for k, v in declared.items() if v}
    return sae, info


def prepare_pretrained(sae, info: dict, outdir: Path | str, *, model, layer: int,
                       held_out: list, configured_model: str, device: str,
                       model_batch: int = 8, provenance: dict | None = None, log=print) -> dict:
    """Save a fetched registry SAE (a local one is used in place), with its quality figures on
    held-out windows of this model and its exported encoder."""
    with atomic_dir(outdir) as tmp:
        if info["kind"] != "local":  # a downloaded SAE is kept with the results
            sae.save_model(str(tmp))
        sae.to(device)
        figures, acts = evaluate_sae(model, layer, sae, held_out, model_batch=model_batch,
                                     device=device)
        info = {**info, **(provenance or {}), **_rounded(figures)}
        info["warnings"] = (_declared_warnings(info["declared_model"], configured_model)
                            + _accepted_warnings(info, layer) + quality_warnings(info))
        info["fast_encoder"] = export_checked(sae, tmp, acts)
        log(f"SAE L{layer}: {info}")
        write_json(tmp / MANIFEST, info)
    return info


def _describe(sae) -> dict:
    cfg = sae.cfg
    meta = getattr(cfg, "metadata", None)
    return {"d_in": int(cfg.d_in), "width": int(cfg.d_sae), "architecture": cfg.architecture(),
            "hook_name": getattr(meta, "hook_name", None) if meta else None,
            "k": int(cfg.k) if getattr(cfg, "k", None) else None}


def load_sae(prepared: Path | str, device: str = "cpu"):
    """(encoder, info): the exported encoder when prepare_sae verified one, else sae-lens."""
    info = read_info(prepared)
    if info.get("fast_encoder"):
        return SparseEncoder.load(prepared, device), info
    from sae_lens import SAE

    path = Path(prepared) / info["path"] if info["kind"] != "local" else Path(info["path"])
    if info["kind"] != "local":  # written by prepare_sae (a local SAE is the user's)
        check_safetensors_dir(path)
    sae = SAE.load_from_disk(str(path), device=device)
    sae.eval()
    return sae, info
