"""Writing and reading the workflow's files (stsflow.io.files): an interrupted write leaves
nothing a rerun would trust or keep, and a damaged file is refused when read, with its name and
the fix."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stsflow.io import files
from stsflow.io.files import (
    DamagedFileError,
    atomic_dir,
    atomic_path,
    check_readable,
    check_safetensors,
    leftover_temporaries,
    read_frame,
    read_json,
    read_metadata,
    read_schema,
    read_table,
    temporary_path,
    write_json,
    write_parquet,
)


def table(n: int = 5000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"doc_id": np.arange(n, dtype=np.int32), "value": rng.normal(size=n),
                     "feat_idx": pa.array([[i, i + 1] for i in range(n)], pa.list_(pa.int32()))})


def cut(path, keep: int) -> None:
    """Keep the first ``keep`` bytes of ``path`` (negative: drop that many from its end)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def zero(path, start: int, n: int) -> None:
    """Zeros over ``n`` bytes from ``start``: what a disk that lost a block returns."""
    data = bytearray(path.read_bytes())
    data[start:start + n] = bytes(n)
    path.write_bytes(bytes(data))


def safetensors_file(path, n: int = 64) -> None:
    """A safetensors file written by hand from the format's definition: 8-byte header length,
    JSON header, then the tensors' bytes."""
    body = np.arange(n, dtype=np.float32).tobytes()
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, len(body)]},
                         "__metadata__": {"format": "pt"}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + body)


# ---------------------------------------------------------------------------- atomic writers


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    target = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp == temporary_path(target) and tmp.name == ".t.parquet.tmp"
        tmp.write_bytes(b"half a file")
        raise RuntimeError("interrupted")
    out = tmp_path / "folder"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.json").write_text("{}")
        raise RuntimeError("interrupted")
    assert sorted(tmp_path.iterdir()) == []


def test_a_rerun_removes_what_a_killed_writer_of_the_same_target_left(tmp_path):
    """A killed job leaves its temporaries (a kill runs no cleanup); the next write of the same
    target removes them, and those of earlier versions' per-process names; a sibling target's
    temporary (another job may be writing it now) stays."""
    shard, folder = tmp_path / "plain.parquet", tmp_path / "plain.resid"
    left = [temporary_path(shard), tmp_path / ".plain.parquet.k3j_x0a9.tmp",  # mkstemp's names
            tmp_path / ".plain.resid.tmp", tmp_path / "plain.resid.tmp-4242"]  # <name>.tmp-<pid>
    left[0].write_bytes(b"PAR1 half")
    left[1].write_bytes(b"PAR1 half")
    for d in left[2:]:
        d.mkdir()
        (d / "tokens.parquet").write_bytes(b"half")
    sibling = temporary_path(tmp_path / "icl-s0.parquet")  # another job's, in the same folder
    sibling.write_bytes(b"being written")
    assert leftover_temporaries(tmp_path) == sorted(left + [sibling])

    write_parquet(table(10), shard)
    with atomic_dir(folder) as tmp:
        write_parquet(table(10), tmp / "tokens.parquet")
    assert leftover_temporaries(tmp_path) == [sibling]
    assert read_table(shard).equals(table(10))
    assert read_table(folder / "tokens.parquet").equals(table(10))


def test_disk_full_during_a_parquet_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """ENOSPC after the first row group: the error reaches the caller, no file at the target
    and no temporary; the next write succeeds."""
    target = tmp_path / "shard.parquet"
    real = pq.ParquetWriter.write_table
    calls = []

    def full_disk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    with pytest.raises(OSError) as exc, atomic_path(target) as tmp:
        with pq.ParquetWriter(tmp, table().schema) as writer:
            for start in range(0, 5000, 1000):
                writer.write_table(table().slice(start, 1000))
    assert exc.value.errno == errno.ENOSPC and len(calls) == 2
    assert sorted(tmp_path.iterdir()) == []
    monkeypatch.undo()
    write_parquet(table(), target)
    assert read_table(target).equals(table())


def test_written_files_keep_the_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
    finally:
        os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------------------- damaged files


READERS = {
    "read_table": read_table, "read_frame": read_frame, "read_schema": read_schema,
    "read_metadata": read_metadata,
}


# a lost block (the first page's header zeroed) leaves the footer intact: the schema and metadata
# still read, the table readers refuse the file
DAMAGES = [(reader, damage) for reader in sorted(READERS)
           for damage in ("half", "last byte", "empty", "lost block")
           if damage != "lost block" or reader in ("read_table", "read_frame")]


@pytest.mark.parametrize("reader,damage", DAMAGES)
def test_a_damaged_parquet_file_is_refused_with_its_name_and_the_fix(tmp_path, reader, damage):
    path = tmp_path / "plain.parquet"
    write_parquet(table(), path, {"width": 64})
    assert read_metadata(path) == {"width": 64}
    size = path.stat().st_size
    if damage == "lost block":
        zero(path, 4, 64)
    else:
        cut(path, {"half": size // 2, "last byte": size - 1, "empty": 0}[damage])
    with pytest.raises(DamagedFileError) as exc:
        READERS[reader](path)
    msg = str(exc.value)
    assert str(path) in msg and "damaged" in msg
    assert msg.endswith(f"Fix: run the workflow again with `--forcerun {path}` added to the "
                        "snakemake command: it rewrites the file and reruns what reads it")
    assert exc.value.path == path


def test_a_damaged_file_inside_a_folder_output_names_the_folder(tmp_path):
    """Snakemake knows a folder output, not the files inside it: the fix names the folder (the
    one holding Snakemake's timestamp)."""
    panel = tmp_path / "acts" / "plain.panel"
    write_parquet(table(), panel / "sub" / "pooled.parquet")
    (panel / ".snakemake_timestamp").touch()
    cut(panel / "sub" / "pooled.parquet", 100)
    with pytest.raises(DamagedFileError) as exc:
        read_table(panel / "sub" / "pooled.parquet")
    assert str(exc.value).startswith(f"{panel}/sub/pooled.parquet is damaged")
    assert f"`--forcerun {panel}` added to the snakemake command (the output folder that " \
           "holds it" in str(exc.value)


def test_a_damaged_json_file_is_refused(tmp_path):
    path = tmp_path / "stsflow_sae.json"
    write_json(path, {"kind": "train", "width": 64})
    assert read_json(path) == {"kind": "train", "width": 64}
    cut(path, 10)
    with pytest.raises(DamagedFileError, match="stsflow_sae.json is damaged"):
        read_json(path)


def test_a_missing_file_is_not_called_damaged(tmp_path):
    for reader in (*READERS.values(), read_json, check_safetensors):
        with pytest.raises(FileNotFoundError):
            reader(tmp_path / "absent.parquet")


@pytest.mark.parametrize("keep", [0, 7, 20, -1])
def test_a_truncated_safetensors_file_is_refused(tmp_path, keep):
    from safetensors.numpy import load_file

    path = tmp_path / "sae_weights.safetensors"
    safetensors_file(path)
    assert load_file(str(path))["w"].tolist() == list(range(64))  # as the library reads it
    check_safetensors(path)
    cut(path, keep)
    with pytest.raises(DamagedFileError, match="sae_weights.safetensors is damaged"):
        check_safetensors(path)
    with pytest.raises(Exception):  # the library agrees that it is no safetensors file
        load_file(str(path))


def test_check_readable_reports_why(tmp_path):
    good, bad = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_parquet(table(10), good)
    write_parquet(table(10), bad)
    cut(bad, -8)
    (tmp_path / "c.csv").write_text("not checked beyond its hash")
    assert check_readable(good) is None and check_readable(tmp_path / "c.csv") is None
    assert "magic bytes" in check_readable(bad)


def test_the_error_survives_pickling(tmp_path):
    import pickle

    err = DamagedFileError(tmp_path / "x.parquet", "cut short.")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.path == err.path


def test_only_the_readers_touch_workflow_files():
    """Every Parquet and JSON read of the package goes through stsflow.io.files (the readers
    that name a damaged file and its fix): a direct library call is allowed only where the
    file is the user's input or the benchmark's own scratch file (listed here)."""
    import re
    from pathlib import Path

    allowed = {  # file: reads of user inputs, caches, or the benchmark's own temporary files
        "stsflow/io/files.py", "stsflow/benchmark.py", "stsflow/config/facts.py",
        "stsflow/config/checks.py", "stsflow/models/posthoc.py", "stsflow/sae/prepare.py",
        "stsflow/jobs/ranks.py", "stsflow/data/corpora.py"}
    root = Path(files.__file__).resolve().parents[2]
    direct = re.compile(r"pq\.read_|pq\.ParquetFile|pl\.read_parquet|pl\.scan_parquet|"
                        r"json\.loads?\(.*read_text|load_file\(|safe_open\(")
    found = []
    for path in sorted((root / "stsflow").rglob("*.py")) + sorted(
            (root / "workflow_scripts").glob("*.py")):
        rel = str(path.relative_to(root))
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if direct.search(line) and rel not in allowed:
                found.append(f"{rel}:{i}: {line.strip()}")
    # the loaders of weights the workflow wrote check the file first (check_safetensors)
    checked = {"stsflow/jobs/cards.py", "stsflow/sae/encoder.py", "stsflow/finetune/selective.py"}
    assert [f for f in found if f.split(":")[0] not in checked] == []
    for rel in checked:
        assert "check_safetensors(" in (root / rel).read_text(), rel
