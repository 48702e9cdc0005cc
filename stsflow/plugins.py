"""Plugins: modules of other packages that register predictors, metrics or fine-tuning methods.

A plugin is an installed package that names its module under the entry-point group
``stsflow.plugins``, e.g. in its ``pyproject.toml``::

    [project.entry-points."stsflow.plugins"]
    my_predictor = "my_package.my_predictor"

Importing the module registers what it defines (``register_predictor``, ``register_metric``,
``register_method``), exactly as a built-in module registers its own. Every registry loads the
plugins before it answers, so the process that plans the workflow and every job process see the
same entries without any configuration (a cluster job runs in the same environment as the
workflow that submitted it).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

GROUP = "stsflow.plugins"
_loaded: list[str] | None = None


def load() -> list[str]:
    """Import every plugin module once; return their names."""
    global _loaded
    if _loaded is not None:
        return _loaded
    names = [ep.value for ep in entry_points(group=GROUP)]
    _loaded = names  # before importing: a plugin importing a registry must not load them again
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ImportError(f"stsflow plugin {name!r} (entry point group {GROUP}) failed to "
                              f"import: {exc}. Fix: repair or uninstall the package that "
                              "provides it") from exc
    return names
