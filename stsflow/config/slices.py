"""How a settings class (``stsflow.config.settings``) meets the config: its schema section
and defaults (the schema is their only copy), the slice a rule passes (optional keys left out
while inactive), and the frozen instance a job rebuilds from it, every key checked."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping

import yaml

from stsflow.config.schema import SCHEMA_PATH, ConfigError


@functools.cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        node = _schema()["$defs"][ref.split("/")[-1]]
    return node


def schema_section(path: str) -> dict:
    """The schema node of a dotted config path; ``*`` steps into a mapping's values
    (``models.*``), ``$defs.<name>`` names a shared definition (``$defs.sae.train``)."""
    parts = path.split(".")
    if parts[0] == "$defs":
        node, parts = _schema()["$defs"][parts[1]], parts[2:]
    else:
        node = _schema()
    for part in parts:
        node = _resolve(node)
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return _resolve(node)


def defaults(path: str) -> dict:
    """The schema's defaults of one section (keys without a default are left out)."""
    props = schema_section(path).get("properties", {})
    return {k: v["default"] for k, v in props.items() if "default" in v}


def with_defaults(cls, section: str, **changes):
    """``cls`` from the schema's defaults of ``section`` (those that are fields of ``cls``) with
    ``changes``: for tests and library callers, never a second copy of a default."""
    names = {f.name for f in dataclasses.fields(cls)}
    base = {k: v for k, v in defaults(section).items() if k in names}
    return build(cls, dict(base, **changes), section)


def without_inactive(cls, mapping: Mapping) -> dict:
    """A config slice as a rule passes it to its jobs: the keys of ``cls.OPTIONAL`` left out
    while they hold the schema's default (keys added once runs existed: at the default, which
    means "as before", they leave every existing job's parameters, Snakemake's rerun trigger,
    as they were)."""
    section = defaults(cls.SECTION)
    optional = getattr(cls, "OPTIONAL", ())
    return {k: v for k, v in mapping.items()
            if not (k in optional and k in section and v == section[k])}


def _tuple_field(tp) -> bool:
    tp = typing.get_origin(tp) or tp
    return tp is tuple


def build(cls, mapping: Mapping, where: str):
    """``cls`` from a config slice, every field present (validation filled the defaults), no key
    left over. Lists become tuples where the field is a tuple (settings are frozen: a job
    cannot change what it was given)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    optional = [k for k in getattr(cls, "OPTIONAL", ()) if k not in mapping]
    if optional:  # left out by the rule while inactive: the schema's default
        section = defaults(cls.SECTION)
        mapping = {**mapping, **{k: section[k] for k in optional}}
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    problems = [f"{where}.{k}: unknown setting for {cls.__name__}. Fix: remove it"
                for k in mapping if k not in fields]
    problems += [f"{where}.{k}: missing (the schema's default was not filled). Fix: validate the "
                 "config with stsflow.config.validate first, or give it"
                 for k in sorted(required - set(mapping))]
    if problems:
        raise ConfigError(problems)
    values = {}
    for k, v in mapping.items():
        tp = hints[k]
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            inner = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = inner[0] if len(inner) == 1 else tp
        if dataclasses.is_dataclass(tp) and isinstance(v, Mapping):
            v = build(tp, v, f"{where}.{k}")
        elif _tuple_field(tp) and isinstance(v, list):
            v = tuple(v)
        values[k] = v
    return cls(**values)
