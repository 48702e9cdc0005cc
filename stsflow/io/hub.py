"""Downloads from the Hugging Face hub, done once, where the network is (on many clusters only
the login node has it): a model's weights, config and tokenizer, and a pretrained SAE's folder.

They land in the Hugging Face cache (``HF_HOME``, which must be on a filesystem the compute
nodes share). The jobs that then load them pass the commit recorded here as the revision, so the
hub library reads its cache without asking the network; a registry SAE (sae-lens asks for the
``main`` branch) falls back to the same cache when the hub cannot be reached."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

# What loading a causal LM with transformers needs: configs, safetensors weights (and their
# index), tokenizer files. Not the original checkpoints (``original/*.pth``) or duplicate .bin
# weights some repositories also carry.
MODEL_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja")


def fetch_repo(repo_id: str, revision: str, patterns: list[str] | tuple[str, ...]) -> dict:
    """Download the files of ``repo_id`` at ``revision`` that match ``patterns`` into the hub
    cache (files already there are not fetched again); what was fetched, with the commit."""
    from huggingface_hub import snapshot_download

    root = Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(patterns)))
    # the snapshot folder may hold files fetched earlier for other patterns: list only these
    present = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    files = sorted(f for f in present if any(fnmatch(f, pat) for pat in patterns))
    if not files:
        raise FileNotFoundError(f"{repo_id}@{revision}: no file matches {list(patterns)}. Check "
                                "the repository id and path in the config")
    return {"repo": repo_id, "requested": revision, "revision": root.name, "files": files,
            "bytes": sum((root / f).stat().st_size for f in files), "snapshot": str(root)}


def registry_location(release: str, sae_id: str) -> tuple[str, str]:
    """(hub repository, folder in it) of an SAE of the sae-lens registry."""
    from stsflow.config.facts import _registry_yaml

    entry = (_registry_yaml() or {}).get(release) or {}
    for sae in entry.get("saes", []):
        if str(sae["id"]) == sae_id:
            return entry["repo_id"], str(sae.get("path", sae_id))
    raise KeyError(f"{release}/{sae_id} is not in the installed sae-lens registry")


def sae_patterns(path: str) -> list[str]:
    """The files of an SAE stored at ``path`` in a repository: a folder, or a single file."""
    path = path.strip("/")
    return [f"{path}/*", path]


def fetch_model(source: dict) -> dict | None:
    """Download a configured model source (``models.<m>.source``) when it is on the hub."""
    if "hf" not in source:
        return None
    got = fetch_repo(source["hf"]["id"], source["hf"]["revision"], MODEL_FILES)
    if not any(f.endswith(".safetensors") for f in got["files"]):
        raise FileNotFoundError(
            f"{got['repo']}@{got['revision']}: no safetensors weights (stsflow loads safetensors "
            "only; pickled .bin weights can run code when loaded). Fix: use a revision or a "
            "copy of the model saved with safetensors (save_pretrained does by default)")
    return got


def fetch_sae(sae: dict) -> dict | None:
    """Download a configured SAE (``models.<m>.layers.<L>.sae``) when it is on the hub: a
    registry SAE's folder in its release's repository, or a ``hub`` SAE's folder."""
    if "registry" in sae:
        repo, path = registry_location(sae["registry"]["release"], sae["registry"]["sae_id"])
        return {**fetch_repo(repo, "main", sae_patterns(path)), "path": path}
    if "hub" in sae:
        hub = sae["hub"]
        got = fetch_repo(hub["repo"], hub["revision"], sae_patterns(hub["path"]))
        return {**got, "path": hub["path"]}
    return None


def hub_sae_dir(hub: dict) -> tuple[Path, str]:
    """(local folder, commit) of a ``hub`` SAE: ``hub.path`` of ``hub.repo`` at ``hub.revision``,
    from the cache when ``fetch_sae`` put it there, else downloaded now."""
    got = fetch_repo(hub["repo"], hub["revision"], sae_patterns(hub["path"]))
    return Path(got["snapshot"]) / hub["path"].strip("/"), got["revision"]
