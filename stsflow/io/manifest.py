"""Run manifest and verification: what a reviewer needs to check a results folder.

The manifest records the resolved config and its hash, package versions, the git commit, the
identities of models, SAEs and datasets, the seeds, and the sha256 of every file in the results
folder (logs excluded: they hold timings; screenshots too: renderings of the hashed report).
``verify`` re-hashes a folder against its manifest.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from stsflow.io.files import package_versions, read_metadata, sha256, write_json

MANIFEST_NAME = "manifest.json"
SKIP_DIRS = {"logs", "screenshots"}  # screenshots: renderings of the hashed report


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def result_files(root: Path) -> list[Path]:
    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if (p.is_file() and rel.parts[0] not in SKIP_DIRS and p.name != MANIFEST_NAME
                and not p.name.startswith(".")):
            files.append(p)
    return files


def git_commit(repo: Path | str = ".") -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True).stdout
        return out + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def identities(root: Path) -> dict:
    """Model, SAE and dataset identities as recorded by the jobs that prepared them."""
    out = {"models": {}, "saes": {}, "datasets": {}}
    for p in sorted(root.glob("models/*/stsflow_model.json")):
        out["models"][p.parent.name] = json.loads(p.read_text())
    for p in sorted(root.glob("sae/*/L*/*/stsflow_sae.json")):  # sae/<model>/L<layer>/<name>
        out["saes"][str(p.parent.relative_to(root / "sae"))] = json.loads(p.read_text())
    for p in sorted(root.glob("data/*/*.parquet")):
        out["datasets"][str(p.relative_to(root / "data"))] = read_metadata(p)
    return out


def write_manifest(root: Path | str, config: dict, out: Path | str | None = None) -> dict:
    root = Path(root)
    manifest = {
        "config": config,
        "config_sha256": config_hash(config),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "seeds": {"sts": config.get("sts", {}).get("seeds"),
                  "finetune": (config.get("finetune") or {}).get("seeds")},
        **identities(root),
        "files": {str(p.relative_to(root)): sha256(p) for p in result_files(root)},
    }
    write_json(out or root / MANIFEST_NAME, manifest)
    return manifest


def verify(root: Path | str, manifest_path: Path | str | None = None) -> list[str]:
    """Problems found re-hashing ``root`` against its manifest (empty list: all good)."""
    root = Path(root)
    manifest = json.loads(Path(manifest_path or root / MANIFEST_NAME).read_text())
    expected = manifest["files"]
    present = {str(p.relative_to(root)): p for p in result_files(root)}
    problems = []
    for rel, digest in sorted(expected.items()):
        if rel not in present:
            problems.append(f"missing   {rel}")
        elif sha256(present[rel]) != digest:
            problems.append(f"modified  {rel}")
    problems += [f"unlisted  {rel}" for rel in sorted(set(present) - set(expected))]
    return problems
