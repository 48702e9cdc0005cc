"""What a prepared SAE directory says about itself, read without torch: its manifest, quality
figures and the warnings they raise (poor reconstruction, mostly dead features, another declared
model, an accepted hook mismatch)."""

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


# above this share of dead features (active on none of the held-out tokens) an SAE is warned
# about: STS ranks the SAE's dimensions, and a mostly dead dictionary leaves few to rank
DEAD_LIMIT = 0.5
# below this many firings per feature expected on the held-out tokens (tokens x L0 / width), a
# rare feature is hard to tell from a dead one, and the warning says so
RARE_FIRINGS = 10


def quality_warnings(info: dict) -> list[dict]:
    """Structured warnings for quality figures below ``QUALITY_THRESHOLDS`` (or undefined), and
    for more than ``DEAD_LIMIT`` of the features dead."""
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
    dead, tokens = info.get("dead_fraction"), info.get("eval_tokens")
    if dead is not None and dead > DEAD_LIMIT:
        message = (f"{dead:.1%} of the SAE's features are dead (active on none of its {tokens} "
                   "held-out tokens): STS ranks SAE dimensions, and this dictionary has few "
                   "live ones to rank")
        width, l0 = info.get("width"), info.get("l0")
        if width and l0 and tokens and tokens * l0 / width < RARE_FIRINGS:
            message += (f"; at L0 {l0} over {width} features a feature is expected to fire "
                        f"{tokens * l0 / width:.1f} times on them, so rare features count as "
                        "dead too: raise sae.eval_tokens to tell them apart")
        out.append({"kind": "dead_features", "value": dead, "threshold": DEAD_LIMIT,
                    "message": message})
    return out


# the kinds quality_warnings gives: recomputed from the figures whenever an SAE is summarised
QUALITY_KINDS = {*(f"low_{k}" for k in QUALITY_THRESHOLDS), "dead_features"}


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
    # the quality rules as they are now, also for an SAE prepared before one was added
    out["warnings"] = [w for w in info.get("warnings", []) if w.get("kind") not in QUALITY_KINDS]
    out["warnings"] += quality_warnings(info)
    out["thresholds"] = {**QUALITY_THRESHOLDS, "dead_fraction": DEAD_LIMIT}
    return out
