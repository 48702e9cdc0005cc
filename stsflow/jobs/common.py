"""Job bodies: what each workflow rule does, as plain functions of paths and config slices.

Rules call these through the thin scripts in ``workflow_scripts/``; tests call them directly.
Each job receives only its own slice of the config, so adding a domain never changes the inputs or
parameters of another domain's jobs.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("stsflow")


def setup_logging(log_path: str | None = None) -> None:
    """Job log: progress lines to the rule's log file (and stderr)."""
    handlers = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")


def _load(model_dir, mspec, threads: int | None = None):
    import torch

    from stsflow.models.load import load_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    return load_model(model_dir, mspec["dtype"], mspec["device"])


def _model_identity(info: dict) -> dict:
    keys = ("kind", "id", "package", "file", "revision", "sha256", "architecture", "n_layers",
            "base", "method", "seed")  # the last three: a fine-tuned checkpoint's origin
    return {k: info[k] for k in keys if k in info}


def _sae_identity(info: dict) -> dict:
    keys = ("kind", "release", "sae_id", "hook_name", "width", "architecture", "train",
            "fraction_variance_explained")
    return {k: info[k] for k in keys if k in info}
