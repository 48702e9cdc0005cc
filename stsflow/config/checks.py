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
from stsflow.config.primary import resolve_primary
from stsflow.config.saes import layer_saes, select_problems, sweep_problems
from stsflow.config.schema import SCHEMA_PATH


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


def semantic_problems(config: dict, base_dir: Path, check_sources: bool = True) -> list[str]:
    problems = []
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
        if found and ft["enabled"] and {"lora", "grpo"} & set(ft["methods"]):
            problems += _lora_problems(name, model, ft["lora_targets"], base_dir)
    ft = config["finetune"]
    if ft["enabled"] and ft["processes"] > 1:  # a data mixture's runs are of these methods too
        if "full" not in ft["methods"]:
            problems.append(f"finetune.processes: {ft['processes']} processes shard full "
                            f"fine-tuning (FSDP), and finetune.methods {ft['methods']} has no "
                            "full run. Fix: add full to finetune.methods, or set processes: 1")
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
    problems += select_problems(config)
    problems += mixture_problems(config)
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


def mixture_problems(config: dict) -> list[str]:
    """The data mixture (mixture:) against the rest: fine-tuning on, its method one of the run
    methods, allocation rules only with the sts strategy they belong to, a pool split on some
    domain, an explicit predictor, layer or N that the run computes."""
    from stsflow.mixture.runs import PAPER_RULE
    from stsflow.mode import RunMethod, run_methods
    from stsflow.scores import pretraining_predictors

    mix, ft = config["mixture"], config["finetune"]
    if not mix["enabled"]:
        return []
    if not ft["enabled"]:
        return ["mixture.enabled: the data mixture fine-tunes, and finetune.enabled is false. "
                "Fix: set finetune.enabled: true, or mixture.enabled: false"]
    problems = []
    runs = run_methods(ft)
    if (mix["method"] or runs[0]) == "grpo":
        problems.append("mixture.method: grpo is RL on the SFT prompts, which a replay of "
                        "answers does not fit. Fix: name an SFT run (lora, full, sae_select-...)")
    elif mix["method"] is not None and (mix["method"] not in runs
                                        or RunMethod.parse(mix["method"]).mix is not None):
        problems.append(f"mixture.method: {mix['method']!r} is not a fine-tuning run of this "
                        f"config ({', '.join(runs)}). Fix: name one of those, or null (the first)")
    contrast = [a for a in mix["allocations"] if a != PAPER_RULE]
    if contrast and "sts" not in mix["strategies"]:
        problems.append(f"mixture.allocations: {', '.join(contrast)} are rules of the sts "
                        "strategy, which mixture.strategies does not list, so no run would use "
                        "them. Fix: add sts to mixture.strategies, or remove those rules")
    if not any(d.get("pool") for d in config["domains"].values()):
        problems.append("mixture.enabled: no domain has a pool split to replay from. Fix: give "
                        "domains.<name>.pool (a source without the test items) to the domains "
                        "to protect")
    # the site the sts and oracle strategies read: mixture: where given, else report.primary's
    keys = ("predictor", "layer", "sae", "n_top", "metric")
    given = dict(config["report"]["primary"], **{k: mix[k] for k in keys if mix[k] is not None})
    why = " (null: report.primary's)"
    for name, model in config["models"].items():
        site = resolve_primary(given, model["layers"], config["evaluate"]["metrics"],
                               config["sts"]["n_top"])
        if "sts" in mix["strategies"] and site["predictor"] not in pretraining_predictors():
            problems.append(f"mixture.predictor: {site['predictor']!r}{why} is not known before "
                            "fine-tuning, so the sts strategy cannot weigh by it. Fix: one of "
                            f"{', '.join(pretraining_predictors())}")
        if "oracle" in mix["strategies"] and site["metric"] not in config["evaluate"]["metrics"]:
            problems.append(f"mixture.metric: {site['metric']!r}{why} is not evaluated "
                            f"(evaluate.metrics: {config['evaluate']['metrics']}). Fix: one of "
                            "those")
        if "sts" not in mix["strategies"]:
            continue
        if site["n_top"] not in config["sts"]["n_top"]:
            problems.append(f"mixture.n_top: {site['n_top']}{why} is not computed (sts.n_top is "
                            f"{config['sts']['n_top']}). Fix: one of those")
        if int(site["layer"]) not in model["layers"]:
            problems.append(f"mixture.layer: model {name!r} has no layer {site['layer']}{why}. "
                            f"Fix: one of {sorted(model['layers'])}")
        elif site["sae"] not in layer_saes(model["layers"][int(site["layer"])]):
            problems.append(f"mixture.sae: model {name!r} has no SAE {site['sae']!r}{why} at "
                            f"layer {site['layer']}. Fix: one of "
                            f"{list(layer_saes(model['layers'][int(site['layer'])]))}")
    return problems


def report_primary_problems(config: dict) -> list[str]:
    """A declared primary analysis (report.primary) the run cannot produce. Only explicit values
    are checked: the defaults (null n_top = the paper's 100, null layer and metric) are resolved
    at report time, and a default the config cannot produce is stated in the report."""
    p, where = config["report"]["primary"], "report.primary"
    problems = []
    if p["n_top"] is not None and p["n_top"] not in config["sts"]["n_top"]:
        problems.append(f"{where}.n_top: {p['n_top']} is not computed (sts.n_top is "
                        f"{config['sts']['n_top']}). Fix: add it to sts.n_top or declare one of "
                        "those")
    for name, model in config["models"].items():
        if p["layer"] is not None and int(p["layer"]) not in {int(k) for k in model["layers"]}:
            problems.append(f"{where}.layer: model {name!r} has no layer {p['layer']} (it has "
                            f"{sorted(int(k) for k in model['layers'])}). Fix: configure it "
                            f"under models.{name}.layers or declare a configured layer")
    if p.get("sae") is not None:
        for name, model in config["models"].items():
            layers = ([int(p["layer"])] if p["layer"] is not None
                      else [min(int(k) for k in model["layers"])])
            for layer in [lay for lay in layers if lay in model["layers"]]:
                names = list(layer_saes(model["layers"][layer]))
                if p["sae"] not in names:
                    problems.append(f"{where}.sae: model {name!r} has no SAE {p['sae']!r} at "
                                    f"layer {layer} (it has {names}). Fix: declare one of those "
                                    "or null (the layer's sae)")
    if p["protocol"] == "extremes":
        problems.append(f"{where}.protocol: extremes selects domains on Δ, so no test of it is "
                        "valid. Fix: use all (extremes rows stay in the report, as descriptive)")
    # tuned models exist: fine-tuned here, or imported as post-hoc pairs
    finetune = config["finetune"]["enabled"] or bool(config.get("posthoc"))
    if p["predictor"].endswith("_oracle") and not finetune:
        problems.append(f"{where}.predictor: {p['predictor']} needs the fine-tuned model. Fix: set "
                        "finetune.enabled: true (or give posthoc: pairs) or declare a predictor "
                        "without _oracle")
    metrics = (list(config["evaluate"]["metrics"]) if finetune else []) + \
        [o["metric"] for o in config.get("observed", [])]
    if p["metric"] is not None and p["metric"] not in metrics:
        problems.append(f"{where}.metric: {p['metric']!r} is not measured (available: "
                        f"{sorted(set(metrics))}). Fix: declare one of them or null")
    return problems


def report_matrix_problems(config: dict) -> list[str]:
    """The analysis across SFT sets (report.matrix.primary) against the run: a predictor known
    before fine-tuning, a metric that is measured, a direction for a signed target, and a target
    domain for every SFT set under the target normalisation. Values inherited from
    report.primary are checked only where a matrix exists (two SFT sets or more)."""
    from stsflow.scores import pretraining_predictors

    m, where = config["report"]["matrix"]["primary"], "report.matrix.primary"
    several = len(config["sft"]) > 1
    problems = []
    predictor = m["predictor"] or config["report"]["primary"]["predictor"]
    if (m["predictor"] is not None or several) and predictor not in pretraining_predictors():
        given = "" if m["predictor"] else " (null: report.primary.predictor)"
        problems.append(f"{where}.predictor: {predictor!r}{given} needs the fine-tuned model, and "
                        "the matrix ranks candidate SFT sets before any fine-tuning. Fix: one of "
                        f"{', '.join(pretraining_predictors())}")
    finetune = config["finetune"]["enabled"] or bool(config.get("posthoc"))
    evaluated = list(config["evaluate"]["metrics"]) if finetune else []
    metrics = evaluated + [o["metric"] for o in config.get("observed", [])]
    if m["metric"] is not None and m["metric"] not in metrics:
        problems.append(f"{where}.metric: {m['metric']!r} is not measured (available: "
                        f"{sorted(set(metrics))}). Fix: declare one of them or null")
    target = m["target"] or config["report"]["primary"]["target"]
    # as analysis.correlation.resolve_primary fills it: the first evaluated metric, else the
    # observed entries' first
    metric = m["metric"] or config["report"]["primary"]["metric"] or next(iter(metrics), None)
    if (target == "signed" and (m["target"] is not None or several) and metric is not None
            and metric not in evaluated):
        problems.append(f"{where}.target: signed needs to know whether a larger {metric!r} is "
                        "better or worse, and only the evaluated metrics "
                        f"({', '.join(evaluated) or 'none'}) declare it. Fix: target abs, or "
                        "an evaluated metric")
    if m["normalisation"] == "target":
        missing = [name for name, s in config["sft"].items() if not s.get("target")]
        if missing:
            problems.append(f"{where}.normalisation: target divides by the score on each SFT "
                            f"set's own domain, and {', '.join(f'sft.{n}' for n in missing)} "
                            "give(s) no target. Fix: set sft.<name>.target, or another "
                            "normalisation (zscore, rank, none)")
    return problems
