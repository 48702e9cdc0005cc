"""How the workflow writes and reads its files.

Writing: every file is written to a temporary sibling, flushed, then renamed into place, so an
interrupted job never leaves a half file that a rerun would trust. The temporary has a fixed
name derived from its target (``.<name>.tmp``, a file or a folder): a job killed mid-write
(``kill -9``, a lost node, a full disk) leaves it behind, and the rerun of that job, which
writes the same target, removes it before it writes. A name per process would stay behind for
good. Hidden names keep a half-written temporary out of the manifest and of Snakemake's
outputs.

Reading: a file that a finished job wrote can still be damaged (truncated or corrupt: a node lost
after the rename on a filesystem that had not yet stored the data, a disk that failed later).
Every read of a workflow-produced file goes through the readers here (``read_table``,
``read_frame``, ``read_schema``, ``read_metadata``, ``read_json``, ``check_safetensors``), which
turn the library's error into a ``DamagedFileError`` naming the file and the fix (Snakemake's
``--forcerun`` of the output that holds it: deleting it is not enough, as Snakemake leaves a
missing intermediate file alone while what was made from it is complete). ``check_readable`` is
the same check for ``stsflow verify``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_PACKAGES = ("stsflow", "torch", "transformers", "sae-lens", "datasets", "pyarrow",
                       "polars", "scipy", "numpy", "peft", "snakemake")


TMP_SUFFIX = ".tmp"
# Temporaries of earlier versions, which named them per process: removed like today's.
_LEGACY_FILE = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")  # tempfile.mkstemp's
_LEGACY_DIR = re.compile(r"(?P<name>.+)\.tmp-\d+$")  # <name>.tmp-<pid>


def temporary_path(path: Path | str) -> Path:
    """Where the atomic writers stage ``path``: a hidden sibling with a name fixed by the
    target, so that the rerun of a killed job finds it."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(path: Path | str) -> None:
    """Remove what an interrupted write of ``path`` left next to it (today's fixed name and the
    per-process names of earlier versions). Only this target's: another job may be writing a
    sibling of it at this moment."""
    path = Path(path)
    _remove(temporary_path(path))
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = _LEGACY_FILE.match(p.name) or _LEGACY_DIR.match(p.name)
            if m and m["name"] == path.name:
                _remove(p)


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is an atomic writer's temporary (today's or an earlier
    version's)."""
    return ((name.startswith(".") and name.endswith(TMP_SUFFIX) and len(name) > 1 + len(TMP_SUFFIX))
            or bool(_LEGACY_FILE.match(name) or _LEGACY_DIR.match(name)))


def leftover_temporaries(root: Path | str) -> list[Path]:
    """Temporaries under ``root`` (a folder counts once, with what it holds): what killed jobs
    left. Empty after a finished run."""
    found = []
    for here, dirs, files in os.walk(root):
        for name in list(dirs):
            if is_temporary(name):
                found.append(Path(here) / name)
                dirs.remove(name)
        found += [Path(here) / name for name in files if is_temporary(name)]
    return sorted(found)


@contextlib.contextmanager
def atomic_path(path: Path | str):
    """Yield the temporary path of ``path`` (``temporary_path``); rename it onto ``path`` if the
    block succeeds, remove it if not. A temporary a killed writer of ``path`` left is removed
    first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    # created with the umask's permissions: results are meant to be shared
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _fsync_path(path: Path) -> None:
    """Flush a file or a directory's entries to disk (where the file system allows it)."""
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
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


@contextlib.contextmanager
def atomic_dir(path: Path | str, replace: bool = True):
    """Yield an empty temporary directory next to ``path`` (``temporary_path``); when the block
    succeeds, fsync it and rename it onto ``path`` (an existing ``path`` is removed first when
    ``replace``, else ``FileExistsError``). On any error the temporary directory is removed, so
    ``path`` is either absent, the previous version, or complete; a temporary a killed writer of
    ``path`` left is removed first. The one writer of output directories (prepared models and
    SAEs, checkpoints)."""
    path = Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"{path} exists; remove it before writing there")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
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
    _fsync_path(path.parent)


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


# ----------------------------------------------------------------------------------------------
# Reading


class DamagedFileError(ValueError):
    """A file the workflow wrote that cannot be read (truncated or corrupt). The message names the
    file, the library's reason and the fix."""

    def __init__(self, path: Path | str, reason: object):
        self.path, self.reason = Path(path), " ".join(str(reason).split()).rstrip(".")
        target = output_holding(self.path)
        what = ("" if target == self.path
                else " (the output folder that holds it: Snakemake names folders, not the "
                     "files inside them)")
        super().__init__(
            f"{self.path} is damaged (truncated or corrupt, e.g. by a full disk or a node lost "
            f"while it was written): {self.reason}. Fix: run the workflow again with "
            f"`--forcerun {shlex.quote(str(target))}` added to the snakemake command{what}: "
            f"it rewrites the file and reruns what reads it")

    def __reduce__(self):  # rebuilt from its two arguments where an exception is pickled
        return type(self), (self.path, self.reason)


def output_holding(path: Path | str) -> Path:
    """The workflow output ``path`` belongs to: the nearest folder above it that Snakemake marked
    as a ``directory()`` output (it holds ``.snakemake_timestamp``), else the file itself: what
    ``snakemake --forcerun`` must be given to rewrite the file."""
    path = Path(path)
    for folder in path.parents:
        if (folder / ".snakemake_timestamp").is_file():
            return folder
    return path


# Errors that are not damage: the file is absent or not ours to read.
_NOT_DAMAGE = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


@contextlib.contextmanager
def reading(path: Path | str, errors: tuple = ()):
    """Turn a library's failure to read ``path`` (inside the block) into ``DamagedFileError``:
    pyarrow's and the JSON parser's errors, an I/O error other than a missing file, and
    ``errors``. Keep the block to the read itself, so no other error is taken for damage."""
    try:
        yield
    except (DamagedFileError, *_NOT_DAMAGE):
        raise
    except (ValueError, OSError, pa.ArrowException, *errors) as exc:
        raise DamagedFileError(path, exc) from exc


def read_table(path: Path | str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file the workflow wrote, as a pyarrow table."""
    with reading(path):
        return pq.read_table(path, columns=columns)


def read_frame(path: Path | str, columns: list[str] | None = None):
    """A Parquet file the workflow wrote, as a polars DataFrame."""
    import polars as pl

    with reading(path, (pl.exceptions.PolarsError, pl.exceptions.PanicException)):
        return pl.read_parquet(path, columns=columns)


def read_schema(path: Path | str) -> pa.Schema:
    """The schema (with its key-value metadata) of a Parquet file the workflow wrote."""
    with reading(path):
        return pq.read_schema(path)


def read_metadata(path: Path | str) -> dict:
    """The ``stsflow.*`` key-value metadata of a Parquet file, decoded."""
    kv = read_schema(path).metadata or {}
    with reading(path):
        return {k.decode()[len("stsflow."):]: json.loads(v) for k, v in kv.items()
                if k.decode().startswith("stsflow.")}


def read_json(path: Path | str):
    """A JSON file the workflow wrote."""
    with reading(path):
        return json.loads(Path(path).read_text(encoding="utf-8"))


def check_safetensors(path: Path | str) -> None:
    """``DamagedFileError`` unless ``path`` is a whole safetensors file: a header that parses and
    exactly the bytes its tensors declare (the check safetensors makes on load, with this file's
    name in the message; read before a model or an SAE is loaded from it)."""
    path = Path(path)
    with reading(path, (KeyError, TypeError, AttributeError, IndexError)):  # a garbled header
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else None
            if n is None or 8 + n > size:
                raise ValueError(f"the file has {size} bytes, less than its safetensors header")
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                  default=0)
        if 8 + n + end != size:
            raise ValueError(f"its tensors end at byte {8 + n + end}; the file has {size} bytes")


def check_safetensors_dir(directory: Path | str) -> None:
    """``check_safetensors`` on every weight file of a directory the workflow wrote."""
    for p in sorted(Path(directory).glob("*.safetensors")):
        check_safetensors(p)


def check_readable(path: Path | str) -> str | None:
    """Why a file the workflow wrote cannot be read, or None: a Parquet file's footer and
    metadata, a JSON file, a safetensors header (other files: their hash only). What
    ``stsflow verify`` checks besides the hashes."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            with reading(path):
                pq.read_metadata(path)
            read_metadata(path)
        elif path.suffix == ".json":
            read_json(path)
        elif path.suffix == ".safetensors":
            check_safetensors(path)
    except DamagedFileError as exc:
        return exc.reason
    return None
