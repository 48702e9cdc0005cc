"""What every job shares: its log, loading the model it runs, the identities it records.

The jobs (one module per rule family: ``prepare``, ``extract``, ``reduce``, ``validate``,
``report``) are plain functions of paths and typed settings (``stsflow.config.settings``). Rules
call them through the thin scripts in ``workflow_scripts/``; tests call them directly. Each job
receives only its own slice of the config, so adding a domain never changes the inputs or
parameters of another domain's jobs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stsflow.config.settings import ModelSettings

log = logging.getLogger("stsflow")


def setup_logging(log_path: str | None = None) -> None:
    """Job log: progress lines to the rule's log file (and stderr)."""
    handlers = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")


def hub_offline() -> None:
    """A model job reads the Hugging Face cache only, never the network: fetch_model and
    fetch_sae downloaded what it loads, where the network is. Without this, on a compute node
    with no network, each lookup of an optional file (chat template, processor config) that
    transformers makes would wait for a connection timeout before falling back to the cache."""
    import os
    import sys

    os.environ["HF_HUB_OFFLINE"] = "1"
    if "huggingface_hub" in sys.modules:  # imported already: its constants are read
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True


def load_job_model(model_dir, model: ModelSettings, threads: int | None = None):
    """(model, tokenizer, info) of a prepared model directory, with the job's thread count and a
    fixed torch seed. Torch is imported here, not at module level: the reduction jobs that share
    this module run without it."""
    import torch

    from stsflow.models.load import load_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    return load_model(model_dir, model.dtype, model.device)


def model_identity(info: dict) -> dict:
    keys = ("kind", "id", "package", "file", "revision", "sha256", "architecture", "n_layers",
            "base", "method", "seed")  # the last three: a fine-tuned checkpoint's origin
    return {k: info[k] for k in keys if k in info}


def sae_identity(info: dict) -> dict:
    keys = ("kind", "release", "sae_id", "repo", "repo_path", "revision", "hook_name", "width",
            "architecture", "train", "fraction_variance_explained")
    return {k: info[k] for k in keys if k in info}
