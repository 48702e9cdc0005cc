"""Schema validation of a config with every problem named (``field.path: message. Fix: ...``),
YAML parsing that names the file and line of a syntax error, and the canonical key order that
keeps Snakemake's parameter comparison independent of how the YAML was written."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "config.schema.yaml"


# keys renamed in a release: (parent path..., old key) -> new key, named in the error
RENAMED = {("report", "primary", "variant"): "predictor"}


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
                    renamed = RENAMED.get((*[str(p) for p in path[-2:]], str(key)))
                    hint = (f"rename it to {renamed!r} (renamed)" if renamed in allowed
                            else f"rename it to {close[0]!r}" if close else "remove or rename it")
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


def canonical(obj):
    """Same content, keys in sorted order at every level. Snakemake compares a job's params by
    their text, so key order must not depend on how the YAML (or a tool rewriting it) ordered
    them: reordering keys must never rerun anything."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, list):
        return [canonical(v) for v in obj]
    return obj


def read_yaml(path: Path | str):
    """Parse a YAML file; a syntax error becomes a ConfigError naming the file, line and column,
    and so does a key written twice in one mapping (YAML would keep the last one silently: two
    ``sts:`` blocks, a setting repeated inside a model), with both lines and every such key at
    once. Keys brought in by a merge (``<<: *anchor``) may be overridden: that is what a merge
    is for."""
    text = Path(path).read_text()
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        twice = _duplicate_keys(node, "", path) if node is not None else []
        if twice:
            raise ConfigError(twice)
        return loader.construct_document(node) if node is not None else None
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
    finally:
        loader.dispose()


def _duplicate_keys(node, field: str, file) -> list[str]:
    """``field: ...`` problems for every key written twice in a mapping of the node tree, in
    the order of the second occurrences. Keys are compared as text: ``12:`` and ``"12":`` are
    one layer once validation reads layers as integers."""
    found: list[tuple[int, str]] = []

    def walk(node, field):
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{field}[{i}]")
        if not isinstance(node, yaml.MappingNode):
            return
        seen: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node,
                                                                          yaml.ScalarNode):
                walk(value, field)
                continue
            key = key_node.value
            where = f"{field}.{key}" if field else key
            if key in seen:
                first, again = seen[key].start_mark.line + 1, key_node.start_mark.line + 1
                lines = f"lines {first} and {again}" if first != again else f"line {first}"
                found.append((again, f"{where}: written twice in {file}, at {lines} (YAML would "
                                     "keep only the second, silently). Fix: keep one of them, "
                                     "merging what each sets"))
            else:
                seen[key] = key_node
            walk(value, where)

    walk(node, field)
    return [message for _, message in sorted(found, key=lambda f: f[0])]


def read_configs(paths: list[Path | str]) -> dict:
    """Read config files and merge them in order, as Snakemake merges ``--configfile`` files
    (a later file's mappings update the earlier ones key by key); the problems of every file
    (syntax, keys written twice) are raised together."""
    from snakemake.utils import update_config

    merged: dict = {}
    problems = []
    for path in paths:
        try:
            data = read_yaml(path) or {}
        except ConfigError as exc:
            problems += exc.problems
            continue
        if not isinstance(data, dict):
            problems.append(f"{path}: holds a {type(data).__name__}, not a mapping of config "
                            "keys. Fix: write the config as keys (models:, sft:, domains:, ...)")
            continue
        update_config(merged, data)
    if problems:
        raise ConfigError(problems)
    return merged
