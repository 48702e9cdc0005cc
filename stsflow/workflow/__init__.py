"""The workflow's Python, importable and testable without Snakemake: what the rule files in
``rules/`` call. ``Workflow(config)`` validates the config and answers everything the rules ask:

* ``layout``: where every artifact lives (``layout.Layout``);
* ``inputs`` / ``params``: each rule's input and parameter functions (``inputs``, ``params``),
  the named inputs built and read back by one class per bundle (``bundles``);
* ``costs``: memory, runtime, threads and GPU units of the jobs that run a model (``costs``),
  one declaration per job kind; every other rule runs in the Snakemake process;
* the runs, sites, scores and wildcard patterns (``core``), built from the registries of
  fine-tuning methods, predictors and metrics (and their plugins, ``stsflow.plugins``);
* ``targets()``: what a plain ``snakemake`` builds (``targets``); ``schedule``: priorities."""

from stsflow.workflow import schedule
from stsflow.workflow.core import Workflow

__all__ = ["Workflow", "schedule"]
