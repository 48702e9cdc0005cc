"""Interrupted and damaged extractions, through the job the extract rule runs
(stsflow.jobs.extract.extract): a job killed with SIGKILL mid-write, a disk that fills during the
shard write, and a shard truncated after it was written. After the rerun nothing of the
interrupted job is left under the results folder and the outputs are those of an uninterrupted
run."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, make_sae, sft_records

from stsflow.config.settings import ExtractSettings, ModelSettings
from stsflow.data import corpora
from stsflow.features.reader import read_shard
from stsflow.io.files import DamagedFileError, leftover_temporaries, read_metadata, temporary_path
from stsflow.jobs import extract as extract_job
from stsflow.jobs import prepare as prepare_job

LAYER = 1
MSPEC = {"source": {"local": {"path": "unused: the jobs read the prepared directory"}},
         "dtype": "float32", "device": "cpu", "chat_template": True, "batch_size": 3,
         "max_length": 512}
# small row groups: the shard is written in several pieces, so a kill can land between them
STS = {"sft_tokens": 100000, "t": 2, "feat_dtype": "float32", "row_group_rows": 16,
       "query_tokens": "content", "sample_seed": 0}
ACTS = "acts/tiny/L1/main/sft/arith"


@pytest.fixture(scope="module")
def inputs(tiny_model_dir, tmp_path_factory) -> Path:
    """A prepared model, a prepared SAE and a materialised SFT set."""
    d = tmp_path_factory.mktemp("interrupted")
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), d / "model")
    make_sae(width=64, k=6).save_model(str(d / "sae_files"))
    (d / "sae").mkdir()
    (d / "sae" / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "local", "path": str(d / "sae_files"), "width": 64}))
    corpora.write_records(sft_records(12), d / "sft.parquet")
    return d


def extract(inputs: Path, results: Path, mode: str = "plain") -> None:
    """The extract rule's job for the SFT set in ``mode`` (shard, statistics, panel; the plain
    run also keeps its residuals), its outputs laid out as the workflow lays them out."""
    acts = results / ACTS
    paired = mode != "plain"
    extract_job.extract(
        inputs / "model", inputs / "sae", ModelSettings.with_defaults(**MSPEC), LAYER, mode,
        {"sft_items": inputs / "sft.parquet"}, ExtractSettings.with_defaults("sft", **STS),
        acts / f"{mode}.parquet", acts / f"{mode}.stats.parquet",
        reference=acts / "plain.parquet" if paired else None,
        panel_out=acts / f"{mode}.panel",
        panel_reference=acts / "plain.panel" if paired else None,
        resid_out=None if paired else acts / f"{mode}.resid", corpus="arith", threads=1)


def snapshot(results: Path) -> dict:
    """Every file under ``results`` by path: its bytes; a statistics file (which records its
    wall time) by its table and its metadata without the time."""
    out = {}
    for p in sorted(results.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(results))
            if rel.endswith(".stats.parquet") and "panel" not in rel:
                meta = read_metadata(p)
                meta.pop("seconds")
                out[rel] = (pq.read_table(p).to_pydict(), meta)
            else:
                out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> dict:
    """The outputs of an uninterrupted run."""
    results = tmp_path_factory.mktemp("clean") / "results"
    extract(inputs, results)
    assert leftover_temporaries(results) == []
    return snapshot(results)


# Run in a fresh process: the extract job, killed with SIGKILL (no cleanup can run) at a chosen
# point of its writes.
KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path[:0] = [sys.argv[1], os.path.join(sys.argv[1], "jobs")]
    import pyarrow.parquet as pq
    from stsflow.io import files
    from test_interrupted import ACTS, extract

    inputs, results, point = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "shard":  # after the shard's second row group
        write_table, written = pq.ParquetWriter.write_table, []

        def killing_write_table(self, *args, **kwargs):
            write_table(self, *args, **kwargs)
            if Path(self.where) == files.temporary_path(results / ACTS / "plain.parquet"):
                written.append(1)
                if len(written) == 2:
                    kill()
        pq.ParquetWriter.write_table = killing_write_table
    else:  # after the panel folder's first file, the shard and statistics in place
        write_parquet = files.write_parquet

        def killing_write_parquet(table, path, *args, **kwargs):
            write_parquet(table, path, *args, **kwargs)
            if Path(path).parent == files.temporary_path(results / ACTS / "plain.panel"):
                kill()
        files.write_parquet = killing_write_parquet
    extract(inputs, results)
""")


@pytest.mark.parametrize("point", ["shard", "panel"])
def test_a_job_killed_mid_write_leaves_nothing_after_its_rerun(inputs, clean, tmp_path, point):
    results = tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "-c", KILLED, str(REPO / "tests"), str(inputs),
                           str(results), point], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    acts = results / ACTS
    left = leftover_temporaries(results)
    if point == "shard":  # the half shard and the (empty) residual folder, nothing in place
        assert left == [temporary_path(acts / "plain.parquet"),
                        temporary_path(acts / "plain.resid")]
        assert temporary_path(acts / "plain.parquet").stat().st_size > 0
        assert not (acts / "plain.parquet").exists()
    else:  # the half panel folder; the shard, its statistics and residuals already in place
        assert left == [temporary_path(acts / "plain.panel")]
        assert any(temporary_path(acts / "plain.panel").iterdir())
        assert (acts / "plain.parquet").is_file() and (acts / "plain.resid").is_dir()

    extract(inputs, results)  # the rerun (Snakemake reruns a job whose outputs are incomplete)
    assert leftover_temporaries(results) == []
    assert snapshot(results) == clean


def test_a_full_disk_during_the_shard_write_leaves_no_partial_file(inputs, clean, tmp_path,
                                                                   monkeypatch):
    """ENOSPC on the shard's second row group: the job fails with the error, nothing of it is
    left (no shard a rerun or a reader could take for whole, no temporary), and the rerun
    gives the uninterrupted run's outputs."""
    results = tmp_path / "results"
    write_table, written = pq.ParquetWriter.write_table, []

    def full_disk(self, *args, **kwargs):
        if Path(self.where) == temporary_path(results / ACTS / "plain.parquet"):
            written.append(1)
            if len(written) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_table(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    with pytest.raises(OSError) as exc:
        extract(inputs, results)
    assert exc.value.errno == errno.ENOSPC and len(written) == 2
    assert [p for p in results.rglob("*") if p.is_file()] == []
    assert leftover_temporaries(results) == []

    monkeypatch.undo()  # space again
    extract(inputs, results)
    assert snapshot(results) == clean


@pytest.mark.parametrize("keep", [0, 0.5, -1])
def test_a_truncated_shard_is_refused_where_it_is_read(inputs, clean, tmp_path, keep):
    """A shard cut short after its rename (a node lost before the data reached the disk): the
    paired ICL job that reads it as its reference fails with an error naming it and the fix;
    following the fix (the job that writes it again, then the one that reads it) gives the
    uninterrupted run's outputs."""
    results = tmp_path / "results"
    extract(inputs, results)
    shard = results / ACTS / "plain.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[:int(len(data) * keep) if keep >= 0 else keep])
    fix = f"Fix: run the workflow again with `--forcerun {shard}` added to the snakemake " \
          "command: it rewrites the file and reruns what reads it"
    with pytest.raises(DamagedFileError) as exc:
        extract(inputs, results, "icl-s0")
    assert str(exc.value).startswith(f"{shard} is damaged") and str(exc.value).endswith(fix)
    assert not (results / ACTS / "icl-s0.parquet").exists()
    with pytest.raises(DamagedFileError, match="is damaged"):
        read_shard(shard)

    extract(inputs, results)  # --forcerun: the writer's job, then the reader's
    extract(inputs, results, "icl-s0")
    plain = {k: v for k, v in snapshot(results).items() if "icl-s0" not in k}
    assert plain == clean
    assert leftover_temporaries(results) == []
