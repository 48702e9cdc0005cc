"""Run manifest and verification: what a reviewer needs to check a results folder.

The manifest records the resolved config and its hash, package versions, the git commit, the
identities of models, SAEs and datasets, the seeds, and the sha256 of every file in the results
folder (logs excluded: they hold timings; screenshots too: renderings of the hashed report).
``verify`` (``stsflow verify``) re-hashes a folder against its manifest, checks that every file can
still be read (``files.check_readable``), lists the temporaries killed jobs left, and ``advice``
says what to do about each problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path

from stsflow.io.files import (
    DamagedFileError,
    check_readable,
    leftover_temporaries,
    output_holding,
    package_versions,
    read_json,
    read_metadata,
    sha256,
    write_json,
)

MANIFEST_NAME = "manifest.json"
# screenshots: renderings of the hashed report; benchmarks: each job's time and memory, which
# differ on every run (Snakemake's benchmark: files)
SKIP_DIRS = {"logs", "screenshots", "benchmarks"}


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def result_files(root: Path) -> list[Path]:
    """The files a manifest lists: hidden names (Snakemake's timestamps, the temporaries of a
    running or killed job, ``files.temporary_path``) and what they hold are not results."""
    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if (p.is_file() and rel.parts[0] not in SKIP_DIRS and p.name != MANIFEST_NAME
                and not any(part.startswith(".") for part in rel.parts)):
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
        out["models"][p.parent.name] = read_json(p)
    for p in sorted(root.glob("sae/*/L*/*/stsflow_sae.json")):  # sae/<model>/L<layer>/<name>
        out["saes"][str(p.parent.relative_to(root / "sae"))] = read_json(p)
    for p in sorted(root.glob("data/*/*.parquet")):
        out["datasets"][str(p.relative_to(root / "data"))] = read_metadata(p)
    return out


def write_manifest(root: Path | str, config: dict, out: Path | str | None = None) -> dict:
    """Write the manifest of a results folder; refused (``DamagedFileError``, every damaged file
    named) where a file cannot be read, so that no manifest vouches for a damaged file."""
    root = Path(root)
    files = result_files(root)
    damaged = [DamagedFileError(p, reason) for p in files if (reason := check_readable(p))]
    if len(damaged) == 1:
        raise damaged[0]
    if damaged:
        raise ValueError(f"{len(damaged)} damaged files:\n" + "\n".join(map(str, damaged)))
    manifest = {
        "config": config,
        "config_sha256": config_hash(config),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "seeds": {"sts": config.get("sts", {}).get("seeds"),
                  "finetune": (config.get("finetune") or {}).get("seeds")},
        **identities(root),
        "files": {str(p.relative_to(root)): sha256(p) for p in files},
    }
    write_json(out or root / MANIFEST_NAME, manifest)
    return manifest


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finding of ``check``. ``kind``: missing (listed, absent), modified (its sha256
    differs), damaged (cannot be read, ``reason`` says why), unlisted (present, not listed),
    leftover (a temporary a killed job left)."""

    kind: str
    rel: str
    reason: str | None = None

    def __str__(self) -> str:
        return f"{self.kind:<10}{self.rel}" + (f" ({self.reason})" if self.reason else "")


def check(root: Path | str, manifest_path: Path | str | None = None) -> list[Problem]:
    """Every problem of ``root`` against its manifest (empty list: all good)."""
    root = Path(root)
    manifest = read_json(Path(manifest_path or root / MANIFEST_NAME))
    expected = manifest["files"]
    present = {str(p.relative_to(root)): p for p in result_files(root)}
    problems = []
    for rel in sorted(set(expected) | set(present)):
        if rel not in present:
            problems.append(Problem("missing", rel))
        elif (reason := check_readable(present[rel])) is not None:
            problems.append(Problem("damaged", rel, reason))
        elif rel not in expected:
            problems.append(Problem("unlisted", rel))
        elif sha256(present[rel]) != expected[rel]:
            problems.append(Problem("modified", rel))
    problems += [Problem("leftover", str(p.relative_to(root))) for p in leftover_temporaries(root)]
    return problems


def verify(root: Path | str, manifest_path: Path | str | None = None) -> list[str]:
    """``check``'s problems as lines (empty list: all good)."""
    return [str(p) for p in check(root, manifest_path)]


def advice(root: Path | str, problems: list[Problem]) -> list[str]:
    """What to do about ``problems``, as lines with the commands. Damaged, modified and missing
    files are rewritten by Snakemake's ``--forcerun`` of the outputs that hold them (a file
    inside a folder output: the folder): a plain rerun leaves a missing intermediate file alone
    while what was made from it is complete. Paths relative to the working directory, where
    Snakemake looks for them."""
    root = Path(root)

    def here(path: Path) -> str:
        rel = os.path.relpath(path)
        return shlex.quote(rel if not rel.startswith("..") else str(path))

    redo = sorted({output_holding(root / p.rel) for p in problems
                   if p.kind in ("damaged", "modified", "missing")})
    lines = []
    if redo:
        lines += ["Damaged, modified or missing outputs: rewrite them (and rerun what reads "
                  "them) with your snakemake command, from the workflow's directory, plus:",
                  "  --forcerun " + " ".join(here(d) for d in redo)]
    leftover = [root / p.rel for p in problems if p.kind == "leftover"]
    if leftover:
        lines += ["Temporaries of killed jobs: the rerun of each job removes its own; with no "
                  "workflow running, deleting them is safe:",
                  "  rm -r " + " ".join(here(p) for p in leftover)]
    if any(p.kind == "unlisted" for p in problems):
        lines.append("Unlisted files: not written by the workflow (remove them), or by a run "
                     "that stopped before its last job (run the workflow to the end: the "
                     "manifest job lists them).")
    return lines
