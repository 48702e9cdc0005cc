"""`stsflow verify`: a results folder against its manifest (stsflow.io.manifest): every file whose
hash differs or that cannot be read, the temporaries killed jobs left, and what to do."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stsflow.cli import main
from stsflow.io.files import (
    DamagedFileError,
    atomic_dir,
    read_table,
    temporary_path,
    write_json,
    write_parquet,
    write_text,
)
from stsflow.io.manifest import check, verify, write_manifest

SHARD = "acts/tiny/L1/main/sft/arith/plain.parquet"
PANEL = "acts/tiny/L1/main/sft/arith/plain.panel"


@pytest.fixture
def results(tmp_path):
    """A small results folder as the workflow lays it out (a shard of several row groups, a
    folder output marked by Snakemake, a prepared SAE's manifest, a CSV table) and its
    manifest."""
    root = tmp_path / "results"
    n = 4000
    rng = np.random.default_rng(0)
    shard = pa.table({"doc_id": np.repeat(np.arange(n // 40, dtype=np.int32), 40),
                      "feat_idx": pa.array([sorted(rng.choice(64, 4, replace=False).tolist())
                                            for _ in range(n)], pa.list_(pa.int32())),
                      "feat_val": pa.array([rng.random(4).tolist() for _ in range(n)],
                                           pa.list_(pa.float32()))})
    write_parquet(shard, root / SHARD, {"width": 64}, row_group_size=1000)
    with atomic_dir(root / PANEL) as tmp:
        write_parquet(pa.table({"dim": np.arange(64)}), tmp / "resid.stats.parquet")
    (root / PANEL / ".snakemake_timestamp").touch()  # Snakemake marks a directory() output
    write_json(root / "sae/tiny/L1/main/stsflow_sae.json", {"kind": "train", "width": 64})
    write_text(root / "tables/tiny/arith/sts.csv", "domain,sts_act\nlaw,1.5\n")
    write_manifest(root, {"results": "results"})
    return root


def run_cli(root, capsys):
    rc = main(["verify", str(root)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_a_clean_folder_passes(results, capsys):
    assert check(results) == []
    rc, out, _ = run_cli(results, capsys)
    assert rc == 0 and out.strip() == f"{results}: OK, every file matches the manifest"


def test_a_truncated_shard_is_reported_damaged_with_the_fix(results, capsys):
    shard = results / SHARD
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a full disk's half file
    problems = check(results)
    assert [(p.kind, p.rel) for p in problems] == [("damaged", SHARD)]
    assert "magic bytes not found" in problems[0].reason
    rc, out, _ = run_cli(results, capsys)
    assert rc == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"damaged   {SHARD} (") and lines[1] == f"{results}: 1 problem(s)"
    assert lines[3] == f"  --forcerun {shard}"
    with pytest.raises(DamagedFileError, match=f"{shard} is damaged"):  # and when a job reads it
        read_table(shard)


def flipped(path, at: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    return bytes(data)


def test_a_flipped_byte_is_reported(results, capsys):
    """A flipped bit inside a data page mostly reads without error (Parquet pages carry no
    checksum as written here) and gives other values: the hash catches it (modified). A flipped
    bit in the footer's magic makes the file unreadable (damaged)."""
    shard = results / SHARD
    good = read_table(shard)
    col = pq.ParquetFile(shard).metadata.row_group(1).column(2)  # feat_val, second row group
    for at in range(col.data_page_offset + col.total_compressed_size // 2,
                    col.data_page_offset + col.total_compressed_size):
        shard.write_bytes(flipped(results / SHARD, at))
        try:
            if not read_table(shard).equals(good):
                break  # read silently with another value: what only a hash can see
        except DamagedFileError:
            pass
        shard.write_bytes(flipped(results / SHARD, at))  # flip back, try the next byte
    else:
        pytest.fail("no flipped byte of the page read without error")
    assert verify(results) == [f"modified  {SHARD}"]
    rc, out, _ = run_cli(results, capsys)
    assert rc == 1 and f"  --forcerun {shard}" in out.splitlines()

    csv = results / "tables/tiny/arith/sts.csv"
    csv.write_bytes(flipped(csv, 20))
    sae = results / "sae/tiny/L1/main/stsflow_sae.json"
    sae.write_bytes(flipped(sae, 0))  # "{" becomes "z"
    shard.write_bytes(flipped(shard, shard.stat().st_size - 1))  # PAR1 -> PAR0
    found = {p.rel: p for p in check(results)}
    assert {rel: p.kind for rel, p in found.items()} == {
        SHARD: "damaged", "sae/tiny/L1/main/stsflow_sae.json": "damaged",
        "tables/tiny/arith/sts.csv": "modified"}
    rc, out, _ = run_cli(results, capsys)
    assert rc == 1
    assert f"  --forcerun {shard} {sae} {csv}" in out.splitlines()


def test_temporaries_of_killed_jobs_are_reported(results, capsys):
    temporary_path(results / SHARD).write_bytes(b"PAR1 half a shard")
    temporary_path(results / "acts/tiny/L1/main/sft/arith/plain.resid").mkdir()
    legacy = results / "acts/tiny/L1/main/sft/arith/.icl-s0.parquet.a1b2c3d4.tmp"
    legacy.write_bytes(b"PAR1")  # an earlier version's per-process name
    assert verify(results) == [
        "leftover  acts/tiny/L1/main/sft/arith/.icl-s0.parquet.a1b2c3d4.tmp",
        "leftover  acts/tiny/L1/main/sft/arith/.plain.parquet.tmp",
        "leftover  acts/tiny/L1/main/sft/arith/.plain.resid.tmp"]
    rc, out, _ = run_cli(results, capsys)
    assert rc == 1 and "Temporaries of killed jobs" in out


def test_a_file_missing_inside_a_folder_output_names_the_folder(results, capsys):
    """Snakemake knows a folder output, not the files inside it: the fix names the folder."""
    (results / PANEL / "resid.stats.parquet").unlink()
    (results / "tables/tiny/arith/sts.csv").unlink()
    assert verify(results) == [f"missing   {PANEL}/resid.stats.parquet",
                               "missing   tables/tiny/arith/sts.csv"]
    rc, out, _ = run_cli(results, capsys)
    assert rc == 1
    assert f"  --forcerun {results / PANEL} {results}/tables/tiny/arith/sts.csv" in out.splitlines()


def test_the_manifest_is_not_written_over_a_damaged_file(results):
    shard = results / SHARD
    shard.write_bytes(shard.read_bytes()[:-100])
    before = (results / "manifest.json").read_bytes()
    with pytest.raises(DamagedFileError, match=f"{shard} is damaged"):
        write_manifest(results, {"results": "results"})
    assert (results / "manifest.json").read_bytes() == before


def test_without_a_manifest_verify_says_how_to_get_one(tmp_path, capsys):
    rc, _, err = run_cli(tmp_path / "results", capsys)
    assert rc == 1 and "manifest.json: not found" in err and "run it to the end" in err
