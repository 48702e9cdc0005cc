"""Atomic file output and provenance.

Every file the workflow writes goes through here: written to a temporary sibling, flushed, then
renamed into place, so an interrupted job never leaves a half file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_PACKAGES = ("stsflow", "torch", "transformers", "sae-lens", "datasets", "pyarrow",
                       "polars", "scipy", "numpy", "peft", "snakemake")


@contextlib.contextmanager
def atomic_path(path: Path | str):
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(Path(root) / name, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))


@contextlib.contextmanager
def atomic_dir(path: Path | str, replace: bool = True):
    """Yield an empty temporary directory next to ``path``; when the block succeeds, fsync it and
    rename it onto ``path`` (an existing ``path`` is removed first when ``replace``, else
    ``FileExistsError``). On any error the temporary directory is removed, so ``path`` is either
    absent, the previous version, or complete. The one writer of output directories (prepared
    models and SAEs, checkpoints)."""
    import shutil

    path = Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"{path} exists; remove it before writing there")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            if not replace:
                raise FileExistsError(f"{path} appeared while it was being written")
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256(path: Path | str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    out = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def write_parquet(table: pa.Table, path: Path | str, metadata: dict | None = None,
                  row_group_size: int | None = None, compression: str = "zstd") -> None:
    """Write ``table`` atomically; ``metadata`` values go JSON-encoded into the key-value metadata
    under ``stsflow.<key>``."""
    kv = dict(table.schema.metadata or {})
    for key, value in (metadata or {}).items():
        kv[f"stsflow.{key}".encode()] = json.dumps(value, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(kv)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=row_group_size)


def read_metadata(path: Path | str) -> dict:
    """The ``stsflow.*`` key-value metadata of a Parquet file, decoded."""
    kv = pq.read_schema(path).metadata or {}
    return {k.decode()[len("stsflow."):]: json.loads(v) for k, v in kv.items()
            if k.decode().startswith("stsflow.")}
