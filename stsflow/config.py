"""Configuration: JSON-schema validation with defaults, then checks the schema cannot express
(layer ranges, cross references, files, empty corpora, a local SAE's hook and input width against
the model and layer, SAE sizes against ``k`` and ``sts.n_top``, LoRA targets against the model's
modules). Runs when the Snakefile is parsed, so a bad config fails before any job starts, with
every problem listed by field and with its fix; a YAML syntax error names the file and line."""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.util
import json
import math
import re
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid config:\n" + "\n".join(f"  - {p}" for p in problems))


def _field(path, root=None) -> str:
    """``models.x.layers.3``; list items as ``observed[0]`` (found by walking ``root``)."""
    out, node = "", root
    for key in path:
        if isinstance(node, list):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
        try:
            node = node[key]
        except (TypeError, LookupError):
            node = None
    return out or "(top level)"


def schema_errors(config: dict) -> list[str]:
    """Validate against the JSON schema and fill defaults in place (snakemake.utils.validate)."""
    import jsonschema
    from snakemake.utils import validate as sm_validate

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    try:
        sm_validate(config, str(SCHEMA_PATH), set_default=True)
        return []
    except Exception:  # collect every error, not only the first one snakemake reports
        validator = jsonschema.Draft202012Validator(schema)
        problems = []
        errors = validator.iter_errors(config)
        for err in sorted(errors, key=lambda e: [str(k) for k in e.absolute_path]):
            path = list(err.absolute_path)
            where = _field(path, config)
            if err.validator == "additionalProperties" and isinstance(err.instance, dict):
                allowed = sorted(err.schema.get("properties", {}))
                for key in [k for k in err.instance if k not in allowed]:
                    close = difflib.get_close_matches(str(key), allowed, n=1)
                    hint = f"rename it to {close[0]!r}" if close else "remove or rename it"
                    problems.append(f"{_field([*path, key], config)}: unknown key. Fix: {hint} "
                                    f"(allowed: {', '.join(allowed)})")
            elif err.validator == "required" and isinstance(err.instance, dict):
                for key in [k for k in err.validator_value if k not in err.instance]:
                    problems.append(f"{_field([*path, key], config)}: missing. Fix: add it")
            elif "propertyNames" in err.relative_schema_path:
                problems.append(f"{_field([*path, err.instance], config)}: invalid name, "
                                f"{err.message}. Fix: rename it")
            elif (err.validator in ("oneOf", "minProperties", "maxProperties")
                  and isinstance(err.instance, dict) and "properties" in err.schema):
                # objects that take exactly one of their keys (corpus, model and SAE sources)
                alts = err.schema.get("oneOf", [])
                choices = [k for alt in alts for k in alt.get("required", [])]
                choices = choices or list(err.schema["properties"])
                given = [k for k in err.instance if k in choices]
                problems.append(f"{where}: give exactly one of {', '.join(choices)} (given: "
                                f"{', '.join(given) or 'none'})")
            elif err.validator == "type":
                kinds = " or ".join(_YAML_TYPES.get(v, v) for v in _as_list(err.validator_value))
                problems.append(f"{where}: {err.message}. Fix: use {kinds}")
            else:
                problems.append(f"{where}: {err.message}")
        return list(dict.fromkeys(problems)) or ["config does not match the schema"]


_YAML_TYPES = {"array": "a list", "object": "a mapping", "integer": "an integer",
               "number": "a number", "string": "a string", "boolean": "true or false",
               "null": "null (~)"}


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def package_file(spec: dict) -> Path:
    """Path of a file shipped inside an installed Python package (located, never imported)."""
    found = importlib.util.find_spec(spec["package"])
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"package {spec['package']!r} is not installed")
    return Path(list(found.submodule_search_locations)[0]) / spec["file"]


@functools.lru_cache(maxsize=1)
def _registry_yaml() -> dict | None:
    found = importlib.util.find_spec("sae_lens")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / "pretrained_saes.yaml"
    if not path.exists():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(), Loader=loader) or {}


def sae_registry() -> dict | None:
    """The installed sae-lens registry (release -> [sae ids]), read from its YAML without importing
    sae-lens (slow); None when sae-lens is not installed."""
    data = _registry_yaml()
    if data is None:
        return None
    return {rel: [str(s["id"]) for s in (spec or {}).get("saes", [])] for rel, spec in data.items()}


def registry_model(release: str) -> str | None:
    """The model a registry release declares (its ``model`` field, a TransformerLens or hub name).
    The registry YAML does not carry SAE widths or hooks: those are read from the SAE's own config
    when ``prepare_sae`` fetches it."""
    return ((_registry_yaml() or {}).get(release) or {}).get("model")


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


def registry_id_facts(release: str, sae_id: str, hidden_size: int | None) -> dict:
    """Layer and width of a registry SAE read from its release and id alone (no download, no
    sae-lens import), for the naming schemes of the residual-stream releases the presets use;
    None where the id does not say (the prepare_sae job checks the SAE's own config anyway).

    * Llama Scope ``l25r_8x``: layer 25, ``r`` residual (``a``/``m``: attention/MLP outputs),
      width 8 × hidden size;
    * Gemma Scope ``layer_31/width_131k/...`` in a ``-res`` release: width "131k" is 2^17 (the
      ids round powers of two to thousands);
    * andyrdt ``resid_post_layer_23_trainer_1``; ids that are hook names ``blocks.L.hook_resid_post``.
    """
    layer = width = None
    if m := re.fullmatch(r"l(\d+)([ram])_(\d+)x", sae_id):
        if m.group(2) == "r":
            layer = int(m.group(1))
            width = int(m.group(3)) * hidden_size if hidden_size else None
    elif m := re.search(r"(?:^|/)layer_(\d+)(?:/|_|$)", sae_id):
        if re.search(r"-res(?:-|$)", release) and "transcoder" not in sae_id:
            layer = int(m.group(1))
        if w := re.search(r"width_(\d+)([km])", sae_id):
            approx = int(w.group(1)) * (1000 if w.group(2) == "k" else 1000 ** 2)
            width = 2 ** round(math.log2(approx))
    elif m := re.search(r"resid_post_layer_(\d+)", sae_id):
        layer = int(m.group(1))
    elif (found := resid_layer(sae_id.split("__")[0])) is not None:  # hook name (+ __trainer)
        layer = found
    return {"layer": layer, "width": width}


@functools.lru_cache(maxsize=8)
def gguf_fields(path: str) -> dict:
    """Scalar header fields of a GGUF file (read once per process: the reader maps the file)."""
    from gguf import GGUFReader, GGUFValueType

    out = {}
    for key, field in GGUFReader(path).fields.items():
        if field.types and field.types[0] not in (GGUFValueType.ARRAY,):
            part = field.parts[-1]
            out[key] = (bytes(part).decode() if field.types[0] == GGUFValueType.STRING
                        else part[0].item())
    return out


def model_facts(model: dict, base_dir: Path) -> tuple[dict | None, str]:
    """``{n_layers, hidden_size}`` read offline from the model (local config.json or GGUF header)
    and where they came from; None for hub models and unreadable files."""
    src = model["source"]
    try:
        if "gguf_package" in src:
            fields = gguf_fields(str(package_file(src["gguf_package"])))
            arch = fields["general.architecture"]
            return {"n_layers": int(fields[f"{arch}.block_count"]),
                    "hidden_size": int(fields[f"{arch}.embedding_length"])}, "GGUF header"
        if "local" in src:
            cfg = json.loads((base_dir / src["local"]["path"] / "config.json").read_text())
            cfg = cfg.get("text_config", cfg)
            return {"n_layers": int(cfg["num_hidden_layers"]),
                    "hidden_size": int(cfg["hidden_size"])}, "config.json"
    except Exception:  # missing files are reported elsewhere
        pass
    return None, ""


def model_n_layers(name: str, model: dict, base_dir: Path) -> tuple[int | None, str]:
    """Layer count from the model itself where reachable offline, else from ``n_layers``."""
    facts, origin = model_facts(model, base_dir)
    if facts:
        return facts["n_layers"], origin
    return model.get("n_layers"), "n_layers"


def _module_cache_key(src: dict, base_dir: Path) -> str | None:
    """A key that changes whenever the model's architecture could: the GGUF file's path, size
    and mtime, the local config.json's bytes, or the hub id and revision; plus the transformers
    version, which builds the modules."""
    import hashlib
    import json
    from importlib.metadata import version

    tf_version = version("transformers")  # not an import of transformers: every parse pays it

    try:
        if "gguf_package" in src:
            f = package_file(src["gguf_package"])
            ident = [str(f), f.stat().st_size, f.stat().st_mtime_ns]
        elif "local" in src:
            ident = [(base_dir / src["local"]["path"] / "config.json").read_text()]
        else:
            ident = [src["hf"]["id"], src["hf"]["revision"]]
    except OSError:
        return None
    # the last element versions what is cached (v2: only modules LoRA can wrap)
    return hashlib.sha256(json.dumps([ident, tf_version, 2]).encode()).hexdigest()[:32]


def _module_cache_dir() -> Path:
    import os

    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "stsflow" / "module-names"


def model_module_names(model: dict, base_dir: Path) -> set[str] | None:
    """Names of the leaf modules of a model, from a small disk cache (every Snakemake start and
    every cluster job validates the config; building the names costs seconds of imports) or
    built and cached; None where the config is not available offline."""
    import json

    key = _module_cache_key(model["source"], base_dir)
    path = _module_cache_dir() / f"{key}.json" if key else None
    if path is not None and path.exists():
        try:
            return set(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    names = _build_module_names(model, base_dir)
    if names is not None and path is not None:
        try:
            from stsflow.storage import write_json

            write_json(path, sorted(names))
        except OSError:  # a read-only home only costs the time
            pass
    return names


def _build_module_names(model: dict, base_dir: Path) -> set[str] | None:
    """Names of the leaf modules of a model, built on the meta device from its config (no
    weights are read); None where the config is not available offline.

    A GGUF file's config is rebuilt from its header with transformers' own GGUF key mapping
    (``AutoConfig.from_pretrained(gguf_file=...)`` also parses the embedded tokenizer, ten
    seconds for the default model); GGUF architectures whose name is not a transformers model
    type are not checked. Hub models are only looked up in the local cache, never on the network
    (the hub is not reachable everywhere): uncached ones are not checked here."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    src = model["source"]
    try:
        if "gguf_package" in src:
            from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

            fields = gguf_fields(str(package_file(src["gguf_package"])))
            arch = fields["general.architecture"]
            mapping = GGUF_CONFIG_MAPPING.get(arch, {})
            kwargs = {hf: fields[f"{arch}.{key}"] for key, hf in mapping.items()
                      if hf and f"{arch}.{key}" in fields}
            cfg = AutoConfig.for_model(arch, **kwargs)
        elif "local" in src:
            cfg = AutoConfig.from_pretrained(base_dir / src["local"]["path"])
        else:
            cfg = AutoConfig.from_pretrained(src["hf"]["id"], revision=src["hf"]["revision"],
                                             local_files_only=True)
        with torch.device("meta"):
            net = AutoModelForCausalLM.from_config(cfg)
    except Exception:
        return None
    return {n for n, mod in net.named_modules()
            if n and not any(True for _ in mod.children()) and _lora_wrappable(mod)}


def _lora_wrappable(module) -> bool:
    """Module types peft's LoRA can wrap (others, e.g. norms and activations, it refuses with
    "Target module ... is not supported" only when the fine-tuning job starts)."""
    import torch.nn as nn

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - every supported transformers has it
        Conv1D = ()
    return isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                               Conv1D))


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


# -- SAE facts: hook, input width, width -------------------------------------------------------

_RESID = [(re.compile(r"^blocks\.(\d+)\.hook_resid_post$"), 0),
          (re.compile(r"^blocks\.(\d+)\.hook_resid_pre$"), -1),  # the input of block L+1
          (re.compile(r"^model\.(?:language_model\.)?layers\.(\d+)(?:\.output)?$"), 0)]


def resid_layer(hook_name: str | None) -> int | None:
    """The block L whose output residual stream ``hook_name`` reads (sae-lens / TransformerLens
    names ``blocks.L.hook_resid_post`` or ``blocks.{L+1}.hook_resid_pre``, Hugging Face module
    names ``model.layers.L``); None for other hooks (attention, MLP, resid_mid, ...)."""
    for pattern, offset in _RESID:
        m = pattern.match(hook_name or "")
        if m:
            return int(m.group(1)) + offset
    return None


def sae_cfg_facts(cfg: dict) -> dict:
    """hook_name, d_in, width and declared model of an sae-lens ``cfg.json`` (6.x keeps the hook
    and model under ``metadata``; older files have them at the top level, the hook possibly as
    ``hook_point``)."""
    meta = cfg.get("metadata") or {}

    def pick(*keys):
        for key in keys:
            for src in (meta, cfg):
                if src.get(key) is not None:
                    return src[key]
        return None

    return {"hook_name": pick("hook_name", "hook_point"), "d_in": cfg.get("d_in"),
            "width": cfg.get("d_sae"), "model_name": pick("model_name")}


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


def _sae_problems(config: dict, name: str, model: dict, layer: int, base_dir: Path,
                  facts: dict | None, origin: str) -> list[str]:
    where = f"models.{name}.layers.{layer}.sae"
    sae = model["layers"][layer]["sae"]
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
        # The registry YAML carries no widths: a prepared SAE tells it on later runs, and the
        # prepare_sae job checks it on the first.
        prepared = base_dir / config["results"] / "sae" / name / f"L{layer}" / "stsflow_sae.json"
        if width is None and prepared.exists():
            info = json.loads(prepared.read_text())
            if info.get("kind") == "registry" and all(
                    info.get(k) == v for k, v in sae["registry"].items()):
                width = info.get("width")
    return problems + n_top_problems(config["sts"]["n_top"], width, where)


def _source_problems(where: str, source: dict, schema: str, fields: dict, base_dir: Path,
                     min_rows: int = 1) -> list[str]:
    from stsflow import corpora

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
        return [f"{where}: {exc}"]
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
            problems += _sae_problems(config, name, model, int(layer), base_dir, facts,
                                      facts_origin)
        ft = config["finetune"]
        if found and ft["enabled"] and "lora" in ft["methods"]:
            problems += _lora_problems(name, model, ft["lora_targets"], base_dir)
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
    problems += report_primary_problems(config)
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
    if p["protocol"] == "extremes":
        problems.append(f"{where}.protocol: extremes selects domains on Δ, so no test of it is "
                        "valid. Fix: use all (extremes rows stay in the report, as descriptive)")
    finetune = config["finetune"]["enabled"]
    if p["variant"].endswith("_oracle") and not finetune:
        problems.append(f"{where}.variant: {p['variant']} needs the fine-tuned model. Fix: set "
                        "finetune.enabled: true or declare a variant without _oracle")
    metrics = (list(config["evaluate"]["metrics"]) if finetune else []) + \
        [o["metric"] for o in config.get("observed", [])]
    if p["metric"] is not None and p["metric"] not in metrics:
        problems.append(f"{where}.metric: {p['metric']!r} is not measured (available: "
                        f"{sorted(set(metrics))}). Fix: declare one of them or null")
    return problems


def canonical(obj):
    """Same content, keys in sorted order at every level. Snakemake compares a job's params by
    their text, so key order must not depend on how the YAML (or a tool rewriting it) ordered
    them: reordering keys must never rerun anything."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, list):
        return [canonical(v) for v in obj]
    return obj


def validate(config: dict, base_dir: Path | str = ".", check_sources: bool = True) -> dict:
    """Return a validated copy of ``config`` with defaults filled; raise ConfigError otherwise."""
    config = copy.deepcopy(config)
    problems = schema_errors(config)
    if problems:
        raise ConfigError(problems)
    # YAML gives integer layer keys; the schema wants strings. Normalise to int.
    for model in config["models"].values():
        model["layers"] = {int(k): v for k, v in model["layers"].items()}
    problems = semantic_problems(config, Path(base_dir), check_sources)
    if problems:
        raise ConfigError(problems)
    return canonical(config)


def read_yaml(path: Path | str):
    """Parse a YAML file; a syntax error becomes a ConfigError naming the file, line and column."""
    text = Path(path).read_text()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        what = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start:
            what += f" ({context} started at line {start.line + 1})"
        raise ConfigError([f"{where}: YAML syntax error: {what}. Fix: correct the syntax there "
                           "(indentation with spaces, ': ' after keys, closed brackets and "
                           "quotes)"]) from None


def load(path: Path | str, base_dir: Path | str = ".", check_sources: bool = True) -> dict:
    """Load and validate a YAML config; relative paths in it are relative to ``base_dir`` (the
    working directory, as everywhere in Snakemake)."""
    return validate(read_yaml(path) or {}, base_dir, check_sources)
