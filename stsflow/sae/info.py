"""What a prepared SAE directory says about itself, read without torch: its manifest, quality
figures and the warnings they raise (poor reconstruction, another declared model, an accepted
hook mismatch)."""

from __future__ import annotations

import math
from pathlib import Path

MANIFEST = "stsflow_sae.json"
QUALITY_THRESHOLDS = {"fraction_variance_explained": 0.5, "loss_recovered": 0.7}
FIGURES = ("l0", "fraction_variance_explained", "dead_fraction", "loss_recovered", "ce_clean",
           "ce_with_sae", "ce_zero_ablation", "eval_tokens")


def _rounded(figures: dict) -> dict:
    digits = {"l0": 2, "fraction_variance_explained": 4, "dead_fraction": 4,
              "loss_recovered": 4}
    return {k: int(v) if k == "eval_tokens" else round(v, digits.get(k, 6))
            for k, v in figures.items()}


def quality_warnings(info: dict) -> list[dict]:
    """Structured warnings for quality figures below ``QUALITY_THRESHOLDS`` (or undefined)."""
    out = []
    for key, threshold in QUALITY_THRESHOLDS.items():
        value = info.get(key)
        if value is None:
            continue
        if math.isnan(value) or value < threshold:
            out.append({"kind": f"low_{key}", "value": value, "threshold": threshold,
                        "message": f"{key.replace('_', ' ')} {value} is below {threshold} on "
                                   f"{info.get('eval_tokens')} held-out tokens: the SAE misses "
                                   "much of this layer, so STS describes the SAE more than the "
                                   "model"})
    return out


def _model_key(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def _declared_warnings(declared: dict, configured: str) -> list[dict]:
    """One warning per declared model name that is not the configured model (names compared
    without the organisation, case-insensitively; a GGUF file name may add
    ``.<quantisation>.gguf``). ``declared`` maps where the name is declared to the name."""
    conf = _model_key(configured)
    by_name: dict[str, list[str]] = {}
    for source, name in declared.items():
        key = _model_key(name)
        if conf != key and not conf.startswith(key + "."):
            by_name.setdefault(name, []).append(source)
    return [{"kind": "declared_model", "sources": sources, "declared": name,
             "configured": configured,
             "message": f"the SAE declares model {name!r} ({', '.join(sources)}), the config uses "
                        f"{configured!r}: expected for an SAE trained on the base model (or "
                        "listed under it) used with its instruct model; otherwise check the SAE"}
            for name, sources in by_name.items()]


def _accepted_warnings(info: dict, layer: int) -> list[dict]:
    if "accepted_hook" not in info:
        return []
    return [{"kind": "accepted_hook", "hook_name": info["accepted_hook"],
             "expected": f"blocks.{layer}.hook_resid_post",
             "message": f"hook {info['accepted_hook']!r} accepted by accept_hook: for layer "
                        f"{layer}"}]


def read_info(prepared: Path | str) -> dict:
    """The manifest of a prepared SAE directory (``DamagedFileError`` where it cannot be read)."""
    from stsflow.io.files import read_json

    return read_json(Path(prepared) / MANIFEST)


def quality_summary(prepared: Path | str) -> dict:
    """What a report shows of a prepared SAE: identity, quality figures, warnings (poor figures,
    a declared model other than the configured one, an accepted hook)."""
    info = read_info(prepared)
    keys = ("kind", "release", "sae_id", "repo", "repo_path", "revision", "path", "hook_name",
            "accepted_hook", "width", "architecture", "declared_model")
    out = {k: info[k] for k in keys if k in info}
    out.update({k: info.get(k) for k in FIGURES})
    # k of a TopK SAE (trained here, or read from a pretrained SAE's config): its sparsity by
    # construction, next to the L0 measured on held-out tokens
    out["k"] = info.get("k") or (info.get("train") or {}).get("k") if str(
        info.get("architecture", "")).lower().startswith("topk") else info.get("k")
    out["warnings"] = list(info.get("warnings", []))
    out["thresholds"] = dict(QUALITY_THRESHOLDS)
    return out
