"""The entry points: validate a config (schema, then the checks against the models, SAEs and data
it names) and return it with the schema's defaults filled, or raise one ConfigError listing
every problem."""

from __future__ import annotations

import copy
from pathlib import Path

from stsflow.config.checks import semantic_problems
from stsflow.config.saes import DEFAULT_NAME
from stsflow.config.schema import ConfigError, canonical, read_configs, schema_errors


def validate(config: dict, base_dir: Path | str = ".", check_sources: bool = True) -> dict:
    """Return a validated copy of ``config`` with defaults filled; raise ConfigError otherwise."""
    config = copy.deepcopy(config)
    problems = schema_errors(config)
    if problems:
        raise ConfigError(problems)
    # YAML gives integer layer keys; the schema wants strings. Normalise to int.
    for model in config["models"].values():
        model["layers"] = {int(k): v for k, v in model["layers"].items()}
        for layer in model["layers"].values():  # the layer's sae has a name, as sweep SAEs do
            layer["sae"].setdefault("name", DEFAULT_NAME)
    problems = semantic_problems(config, Path(base_dir), check_sources)
    if problems:
        raise ConfigError(problems)
    return canonical(config)


def load(path: Path | str | list, base_dir: Path | str = ".", check_sources: bool = True) -> dict:
    """Load and validate a YAML config, or several merged in order as Snakemake merges
    ``--configfile`` files (``read_configs``); relative paths in it are relative to ``base_dir``
    (the working directory, as everywhere in Snakemake)."""
    return validate(read_configs(path if isinstance(path, list) else [path]), base_dir,
                    check_sources)
