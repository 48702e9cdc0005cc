"""Checks of a schema-valid config that the schema cannot express
(layer ranges, cross references, files, empty corpora, a local SAE's hook and input width against
the model and layer, SAE sizes against ``k`` and ``sts.n_top``, LoRA targets against the model's
modules). Runs when the Snakefile is parsed, so a bad config fails before any job starts, with
every problem listed by field and with its fix; a YAML syntax error names the file and line."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import yaml

from stsflow.config.engines import generate_backend_problems
from stsflow.config.facts import (
    model_facts,
    model_module_names,
    model_n_layers,
    package_file,
    registry_id_facts,
    resid_layer,
    sae_cfg_facts,
    sae_registry,
)
from stsflow.config.analysis_checks import (
    mixture_problems,
    report_matrix_problems,
    report_primary_problems,
)
from stsflow.config.saes import layer_saes, sweep_problems
from stsflow.config.schema import SCHEMA_PATH
from stsflow.finetune.registry import methods


def _registry_problems(where: str, reg: dict, layer: int) -> list[str]:
    known = sae_registry()
    if known is None:
        return []
    if reg["release"] not in known:
        close = difflib.get_close_matches(reg["release"], list(known), n=3)
        hint = f" (close: {', '.join(close)})" if close else ""
        return [f"{where}.release: {reg['release']!r} is not in the sae-lens registry{hint}. Fix: "
                "use a release from sae_lens/pretrained_saes.yaml, or a local SAE"]
    ids = known[reg["release"]]
    if reg["sae_id"] not in ids:
        same_layer = [i for i in ids if str(layer) in re.findall(r"\d+", i)]
        some = (same_layer or ids)[:6]
        return [f"{where}.sae_id: {reg['sae_id']!r} is not in release {reg['release']!r}. Fix: one "
                f"of {', '.join(some)}{', ...' if len(same_layer or ids) > 6 else ''}"]
    return []


def _lora_problems(name: str, model: dict, targets: list[str], base_dir: Path) -> list[str]:
    names = model_module_names(model, base_dir)
    if names is None:
        return []
    # peft matches a list entry against a module name by equality or as a dotted suffix, and
    # fails only when no entry matches: a misspelt one next to valid ones would be ignored
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if not missing:
        return []
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names if not n.rsplit(".", 1)[-1].isdigit()})
    return [f"finetune.lora_targets: {', '.join(map(repr, missing))} not in model {name!r}. Fix: "
            f"use module names of this model that LoRA can wrap: {', '.join(leaves)}"]


def sae_fit_problems(where: str, field: str, facts: dict, layer: int, hidden_size: int | None,
                     origin: str, accept_hook: str | None) -> list[str]:
    """Does the SAE read the residual stream after block ``layer`` of this model? ``where`` is
    the SAE config entry (``models.m.layers.L.sae``), ``field`` the key that names the SAE
    (``local.path`` or ``registry.sae_id``). Used at validation (local SAEs) and at the start of
    prepare_sae (every pretrained SAE), with the same wording.

    A hook mismatch can be accepted with ``accept_hook:`` naming exactly the hook shown (so a
    later change of SAE is checked again); an input-width mismatch cannot: the encoder's matrix
    product with the model's residual stream is undefined."""
    problems = []
    hook = facts.get("hook_name") or "unknown"
    want = f"blocks.{layer}.hook_resid_post"
    if resid_layer(facts.get("hook_name")) != layer and accept_hook != hook:
        why = ("the SAE does not record its hook (no metadata.hook_name in its cfg.json)"
               if hook == "unknown" else f"the SAE reads {hook!r}")
        problems.append(
            f"{where}.{field}: {why}, not the residual stream after block {layer} ({want}). Fix: "
            f"use an SAE of {want}" + (f" or move it to layer {resid_layer(hook)}"
                                       if resid_layer(hook) is not None else "")
            + f", or, if you know it fits, set {where}.accept_hook: {hook!r} (recorded in the "
            "SAE's provenance)")
    d_in = facts.get("d_in")
    if hidden_size is not None and d_in is not None and int(d_in) != int(hidden_size):
        problems.append(
            f"{where}.{field}: the SAE's input width d_in={d_in} differs from the model's hidden "
            f"size {hidden_size} ({origin}). Fix: use an SAE trained on this model's residual "
            f"stream (d_in {hidden_size})")
    return problems


def n_top_problems(n_top: list[int], width: int | None, where: str) -> list[str]:
    too_big = [n for n in n_top if width is not None and n > int(width)]
    if not too_big:
        return []
    return [f"sts.n_top: {', '.join(map(str, too_big))} larger than the width {width} of the "
            f"SAE of {where}. Fix: use N <= {width}, or a wider SAE"]


def n_top_of(raw_config: dict) -> list[int]:
    """``sts.n_top`` of an unvalidated config, with the schema default."""
    default = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["sts"]["properties"]
    return list((raw_config.get("sts") or {}).get("n_top") or default["n_top"]["default"])


def _sae_problems(config: dict, name: str, sae: dict, sae_name: str, layer: int, where: str,
                  base_dir: Path, facts: dict | None, origin: str) -> list[str]:
    problems, width = [], None
    hidden = (facts or {}).get("hidden_size")
    if "train" in sae:
        spec = sae["train"]
        width = spec["width"]
        for c in spec.get("corpora") or []:
            if c not in config["sft"] and c not in config["domains"]:
                problems.append(f"{where}.train.corpora: unknown corpus {c!r}. Fix: name an SFT "
                                "set or a domain")
        if spec["architecture"] == "topk" and spec["k"] > spec["width"]:
            problems.append(f"{where}.train.k: {spec['k']} active features asked of an SAE of "
                            f"width {spec['width']}. Fix: set k to at most width (TopK SAEs use "
                            "k of 32 to 128 for thousands of features), or raise width")
    for c in sae.get("eval_corpora") or []:
        if c not in config["sft"] and c not in config["domains"]:
            problems.append(f"{where}.eval_corpora: unknown corpus {c!r}. Fix: name an SFT set "
                            "or a domain")
    if "local" in sae:
        cfg_path = base_dir / sae["local"]["path"] / "cfg.json"
        if not cfg_path.exists():
            problems.append(f"{where}.local.path: no sae-lens cfg.json in {sae['local']['path']}. "
                            "Fix: point it at a folder written by sae-lens (SAE.save_model or "
                            "save_inference_model)")
        else:
            sfacts = sae_cfg_facts(json.loads(cfg_path.read_text()))
            width = sfacts["width"]
            problems += sae_fit_problems(where, "local.path", sfacts, layer, hidden, origin,
                                         sae.get("accept_hook"))
    if "registry" in sae:
        reg_problems = _registry_problems(f"{where}.registry", sae["registry"], layer)
        problems += reg_problems
        if not reg_problems:  # known id: what its name says is checked now, the rest in the job
            id_facts = registry_id_facts(sae["registry"]["release"], sae["registry"]["sae_id"],
                                         hidden)
            width = id_facts["width"]
            if id_facts["layer"] is not None and not sae.get("accept_hook"):
                problems += sae_fit_problems(
                    where, "registry.sae_id",
                    {"hook_name": f"blocks.{id_facts['layer']}.hook_resid_post"}, layer, None,
                    origin, None)
    if "hub" in sae:  # a folder named after its hook (sae-lens's convention) says the layer
        named = resid_layer(sae["hub"]["path"].strip("/").split("/")[-1])
        if named is not None and not sae.get("accept_hook"):
            problems += sae_fit_problems(where, "hub.path",
                                         {"hook_name": f"blocks.{named}.hook_resid_post"}, layer,
                                         None, origin, None)
    if "registry" in sae or "hub" in sae:
        # Neither the registry YAML nor a hub path carries the width: a prepared SAE tells it on
        # later runs, and the prepare_sae job checks it on the first.
        prepared = (base_dir / config["results"] / "sae" / name / f"L{layer}" / sae_name
                    / "stsflow_sae.json")
        if width is None and prepared.exists():
            from stsflow.io.files import read_json

            info = read_json(prepared)
            same = (info.get("kind") == "registry" and "registry" in sae and all(
                info.get(k) == v for k, v in sae["registry"].items())) or (
                info.get("kind") == "hub" and "hub" in sae
                and (info.get("repo"), info.get("repo_path")) == (sae["hub"]["repo"],
                                                                  sae["hub"]["path"]))
            if same:
                width = info.get("width")
    return problems + n_top_problems(config["sts"]["n_top"], width, where)


def _source_problems(where: str, source: dict, schema: str, fields: dict, base_dir: Path,
                     min_rows: int = 1) -> list[str]:
    from stsflow.data import corpora

    if "hub" in source:
        return []  # checked when materialised: the hub is not reachable everywhere
    if "local" in source:
        path = Path(source["local"]["path"])
        path = path if path.is_absolute() else base_dir / path
        if not path.exists():
            return [f"{where}.local.path: {path} does not exist. Fix: point it at a Parquet, "
                    "JSONL, JSON or CSV file"]
    try:
        rows = corpora.load_corpus(source, schema, fields, base_dir=base_dir)
    except corpora.CorpusError as exc:
        return [f"{where}.{exc.field}: {exc}" if exc.field else f"{where}: {exc}"]
    if len(rows) < min_rows:
        filt = source.get("filter")
        hint = f" after filter {filt}" if filt else ""
        return [f"{where}: {len(rows)} rows{hint}, need at least {min_rows}. Fix: check the file "
                "and the filter"]
    return []


def _configured(ft: dict) -> list:
    """The registry entries of the configured fine-tuning methods (known names only: unknown
    ones are reported by registry_problems)."""
    return [methods()[m] for m in ft["methods"] if m in methods()]


def _recipe_keys(ft: dict) -> set[str]:
    return {k for m in _configured(ft) for k in m.recipe_keys}


def registry_problems(config: dict) -> list[str]:
    """Names the config gives that no registry holds: fine-tuning methods, metrics and the
    primary predictor (built-in or registered by a plugin, stsflow.plugins)."""
    from stsflow.evaluate.registry import metrics
    from stsflow.scores import oracle_predictors, pretraining_predictors

    problems = []
    for i, m in enumerate(config["finetune"]["methods"]):
        if m not in methods():
            problems.append(f"finetune.methods[{i}]: unknown method {m!r}. Fix: one of "
                            f"{', '.join(methods())}")
    for i, m in enumerate(config["evaluate"]["metrics"]):
        if m not in metrics():
            problems.append(f"evaluate.metrics[{i}]: unknown metric {m!r}. Fix: one of "
                            f"{', '.join(metrics())}")
    predictor = config["report"]["primary"]["predictor"]
    known = pretraining_predictors() + [f"{n}_oracle" for n in oracle_predictors()]
    if predictor not in known:
        problems.append(f"report.primary.predictor: unknown predictor {predictor!r}. Fix: one of "
                        f"{', '.join(known)}")
    return problems


def semantic_problems(config: dict, base_dir: Path, check_sources: bool = True) -> list[str]:
    problems = registry_problems(config)
    if problems:  # the checks below look the names up
        return problems
    sts = config["sts"]
    for name, model in config["models"].items():
        src = model["source"]
        found = True  # a missing model is reported once, not again as an unknown layer count
        if "gguf_package" in src:
            try:
                if not package_file(src["gguf_package"]).exists():
                    found = False
                    problems.append(f"models.{name}.source.gguf_package.file: "
                                    f"{src['gguf_package']['file']} is not in the package")
            except FileNotFoundError as exc:
                found = False
                problems.append(f"models.{name}.source.gguf_package.package: {exc}. Fix: pip "
                                "install it (--no-deps)")
        if "local" in src and not (base_dir / src["local"]["path"]).is_dir():
            found = False
            problems.append(f"models.{name}.source.local.path: {src['local']['path']} is not a "
                            "directory. Fix: point it at a saved Hugging Face model (config.json "
                            "and weights)")
        n_layers, origin = model_n_layers(name, model, base_dir)
        facts, facts_origin = model_facts(model, base_dir)
        if n_layers is None and found:
            problems.append(f"models.{name}.n_layers: the layer count cannot be read offline. "
                            "Fix: set n_layers")
        for layer in model["layers"]:
            if n_layers is not None and not 0 <= int(layer) < n_layers:
                problems.append(f"models.{name}.layers.{layer}: out of range, the model has "
                                f"{n_layers} layers ({origin}). Fix: use 0..{n_layers - 1}")
            entry = model["layers"][layer]
            for i, sae in enumerate([entry["sae"], *entry.get("sweep", [])]):
                where = f"models.{name}.layers.{layer}." + ("sae" if i == 0 else f"sweep[{i - 1}]")
                problems += _sae_problems(config, name, sae, sae["name"], int(layer), where,
                                          base_dir, facts, facts_origin)
        ft = config["finetune"]
        if found and ft["enabled"] and "lora_targets" in _recipe_keys(ft):
            problems += _lora_problems(name, model, ft["lora_targets"], base_dir)
    ft = config["finetune"]
    if ft["enabled"] and ft["processes"] > 1:  # a data mixture's runs are of these methods too
        sharding = [m.name for m in _configured(ft) if m.shards]
        if not sharding:
            names = [m.name for m in methods().values() if m.shards]
            problems.append(f"finetune.processes: {ft['processes']} processes shard a method's "
                            f"runs (FSDP), and finetune.methods {ft['methods']} has none that "
                            f"shards. Fix: add {' or '.join(names)} to finetune.methods, or set "
                            "processes: 1")
        for name, model in config["models"].items():
            if model["device"] not in ("auto", "cuda", "cpu"):
                problems.append(f"models.{name}.device: {model['device']!r} is one device, and "
                                f"finetune.processes {ft['processes']} puts one rank on each of "
                                "the job's GPUs. Fix: device: auto (or cuda), or processes: 1")
    if check_sources:
        for name, c in config["sft"].items():
            problems += _source_problems(f"sft.{name}.source", c["source"], c["schema"],
                                         c["fields"], base_dir, min_rows=sts["t"] + 1)
        for name, d in config["domains"].items():
            problems += _source_problems(f"domains.{name}.test", d["test"], d["schema"],
                                         d["fields"], base_dir)
            problems += _source_problems(f"domains.{name}.demos", d["demos"], d["schema"],
                                         d["fields"], base_dir, min_rows=sts["m"])
    for i, obs in enumerate(config.get("observed", [])):
        if obs["model"] not in config["models"]:
            problems.append(f"observed[{i}].model: unknown model {obs['model']!r}. Fix: one of "
                            f"{', '.join(config['models'])}")
        if obs["sft"] not in config["sft"]:
            problems.append(f"observed[{i}].sft: unknown SFT set {obs['sft']!r}. Fix: one of "
                            f"{', '.join(config['sft'])}")
        for dom in obs["deltas"]:
            if dom not in config["domains"]:
                problems.append(f"observed[{i}].deltas.{dom}: unknown domain. Fix: define it under "
                                "domains: or remove it")
    problems += sweep_problems(config["models"])
    for name, c in config["sft"].items():
        if c.get("target") is not None and c["target"] not in config["domains"]:
            problems.append(f"sft.{name}.target: unknown domain {c['target']!r}. Fix: one of "
                            f"{', '.join(config['domains'])}, or remove it")
    if config["finetune"]["enabled"]:  # each configured method's own checks
        ft = config["finetune"]
        for m in _configured(ft):
            if m.problems:
                problems += m.problems(config, ft[m.section] if m.section else None)
    problems += mixture_problems(config)  # the analyses' declarations (config.analysis_checks)
    problems += posthoc_problems(config, base_dir)
    problems += report_primary_problems(config)
    problems += report_matrix_problems(config)
    problems += generate_backend_problems(config)
    return problems


def posthoc_problems(config: dict, base_dir: Path) -> list[str]:
    """Post-hoc pairs (posthoc:): a known base model and SFT set, a seed the predictions have,
    a tuned model that exists, and, where both configs can be read offline, the same shape as
    the base (the import job then checks architecture and tokenizer in full)."""
    import json

    from stsflow.config.facts import model_facts

    problems = []
    seeds = config["sts"]["seeds"]
    for label, pair in config.get("posthoc", {}).items():
        at = f"posthoc.{label}"
        if pair["model"] not in config["models"]:
            problems.append(f"{at}.model: unknown model {pair['model']!r}. Fix: one of "
                            f"{', '.join(config['models'])} (the tuned model's base, under "
                            "models:)")
        if pair["sft"] not in config["sft"]:
            problems.append(f"{at}.sft: unknown SFT set {pair['sft']!r}. Fix: one of "
                            f"{', '.join(config['sft'])}")
        if pair["seed"] is not None and pair["seed"] not in seeds:
            problems.append(f"{at}.seed: {pair['seed']} is not one of sts.seeds {seeds}. Fix: "
                            "one of those, or null (the first)")
        (kind, spec), = pair["tuned"].items()
        where = f"{at}.tuned.{kind}.path"
        tuned_cfg = None
        if kind in ("local", "peft"):
            path = base_dir / spec["path"]
            need = (["config.json"] if kind == "local"
                    else ["adapter_config.json", "adapter_model.safetensors"])
            what = ("a save_pretrained directory (config.json and safetensors weights)"
                    if kind == "local" else "a PEFT adapter directory (adapter_config.json and "
                    "adapter_model.safetensors)")
            missing = [f for f in need if not (path / f).is_file()]
            if missing:
                problems.append(f"{where}: {spec['path']} has no {' or '.join(missing)}. Fix: "
                                f"point it at {what}")
            elif kind == "local":
                try:
                    cfg = json.loads((path / "config.json").read_text())
                    tuned_cfg = cfg.get("text_config", cfg)
                except (OSError, ValueError) as exc:
                    problems.append(f"{where}: its config.json cannot be read ({exc}). Fix: "
                                    "save the model again with save_pretrained")
        if kind == "gguf" and not (base_dir / spec["path"]).is_file():
            problems.append(f"{where}: {spec['path']} is not a file. Fix: the path of a .gguf "
                            "file")
        base = config["models"].get(pair["model"])
        if tuned_cfg is not None and base is not None:
            facts, origin = model_facts(base, base_dir)
            for key, fact in (("num_hidden_layers", "n_layers"), ("hidden_size", "hidden_size")):
                if facts and tuned_cfg.get(key) != facts[fact]:
                    problems.append(f"{at}.tuned: its {key} is {tuned_cfg.get(key)}, the base "
                                    f"model {pair['model']!r} has {facts[fact]} ({origin}). Fix: "
                                    "pair it with its own base model")
    return problems
