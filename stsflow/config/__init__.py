"""The workflow's configuration: schema validation with every problem named (``schema``), checks
against the models, SAEs and data it names (``checks``, ``facts``), and the typed settings each
job receives (``settings``). ``load`` / ``validate`` are the entry points."""

from stsflow.config.schema import ConfigError, read_yaml
from stsflow.config.validation import load, validate

__all__ = ["ConfigError", "load", "read_yaml", "validate"]
