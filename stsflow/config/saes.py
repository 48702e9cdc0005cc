"""The SAEs of a layer: its ``sae`` (the one every extraction encodes with, in the forward pass)
and its ``sweep`` (more SAEs encoded from the residuals that extraction keeps). One place that
names them, so rules, checks and reports agree on which SAE is which."""

from __future__ import annotations

DEFAULT_NAME = "main"  # the name of a layer's sae when the config gives none


def layer_saes(layer: dict) -> dict[str, dict]:
    """Name -> SAE config of one validated layer entry, the layer's ``sae`` first."""
    out = {layer["sae"].get("name", DEFAULT_NAME): layer["sae"]}
    for s in layer.get("sweep") or []:
        out[s["name"]] = s
    return out


def primary_sae(layer: dict) -> str:
    """The name of the SAE the layer's extractions encode with in the forward pass."""
    return layer["sae"].get("name", DEFAULT_NAME)


def sae_roles(models: dict) -> tuple[set[str], set[str]]:
    """(names used as a layer's ``sae``, names used in a ``sweep``) over every model and layer."""
    primary, sweep = set(), set()
    for model in models.values():
        for layer in model["layers"].values():
            primary.add(primary_sae(layer))
            sweep.update(s["name"] for s in layer.get("sweep") or [])
    return primary, sweep


def sweep_problems(models: dict) -> list[str]:
    """Names that would make two SAEs' outputs collide: a name twice on one layer, or a name that
    is a layer's ``sae`` on one layer and a sweep SAE on another (their jobs differ: the first runs
    the model, the second reads the kept residuals; the rules tell them apart by name)."""
    problems = []
    for mname, model in models.items():
        for layer, entry in model["layers"].items():
            names = [primary_sae(entry)] + [s["name"] for s in entry.get("sweep") or []]
            for n in sorted({n for n in names if names.count(n) > 1}):
                problems.append(f"models.{mname}.layers.{layer}.sweep: the name {n!r} is used "
                                "twice on this layer. Fix: give every SAE of a layer its own name")
    primary, sweep = sae_roles(models)
    twice = {p.split("'")[1] for p in problems}
    for n in sorted((primary & sweep) - twice):
        problems.append(f"models.*.layers.*: the SAE name {n!r} is a layer's sae on one layer and "
                        "a sweep entry on another. Fix: rename the sweep entry (or name the "
                        "layers' sae the same way on every layer)")
    return problems


def select_sites(model: dict, sae_select: dict) -> list[tuple[int, str]]:
    """(layer, SAE name) of every map of a selective fine-tuning run (finetune.sae_select) on one
    validated model: the configured layers (all of the model's layers when null), each with the
    named SAE or the layer's own ``sae``."""
    layers = sae_select["layers"] or sorted(int(x) for x in model["layers"])
    return [(int(layer), sae_select["sae"] or primary_sae(model["layers"][layer]))
            for layer in layers]


def select_problems(config: dict, sel: dict) -> list[str]:
    """finetune.sae_select (``sel``) against the models (checked when a selective run is
    configured): every listed layer configured on every model, the named SAE on each of those
    layers, K within a trained SAE's width."""
    problems = []
    for mname, model in config["models"].items():
        for layer in sel["layers"] or []:
            if layer not in model["layers"]:
                problems.append(
                    f"finetune.sae_select.layers: layer {layer} is not configured on model "
                    f"{mname!r} (its layers: {', '.join(str(x) for x in model['layers'])}). Fix: "
                    f"list only configured layers, or add the layer under models.{mname}.layers")
        if any(layer not in model["layers"] for layer in sel["layers"] or []):
            continue
        for layer, sae in select_sites(model, sel):
            saes = layer_saes(model["layers"][layer])
            if sae not in saes:
                problems.append(f"finetune.sae_select.sae: model {mname!r} has no SAE named {sae!r} "
                                f"on layer {layer} (it has {', '.join(saes)}). Fix: name one SAE "
                                "that every listed layer has, or null for each layer's sae")
                continue
            width = (saes[sae].get("train") or {}).get("width")
            for k in sel["k"]:
                if width is not None and k > width:
                    problems.append(f"finetune.sae_select.k: {k} exceeds the width {width} of SAE "
                                    f"{sae!r} on models.{mname}.layers.{layer}. Fix: K <= {width}")
    return problems
