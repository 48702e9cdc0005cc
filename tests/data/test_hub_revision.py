"""A hub dataset is read at the commit its branch points to when it is materialised, and the
materialised file records that commit (and what the config asked for); without the hub the
configured revision is read and recorded as not resolved."""

from __future__ import annotations

import types

import pytest
from conftest import sft_records

from stsflow.config.settings import CorpusSettings
from stsflow.data import corpora
from stsflow.io.files import read_metadata
from stsflow.jobs.prepare import materialize_sft

SHA = "f" * 40
SOURCE = {"hub": {"id": "org/limo", "config": None, "split": "train", "revision": "main"}}


@pytest.fixture
def hub(monkeypatch):
    """A fake hub: dataset_info answers with a commit unless told to fail; load_dataset records
    the revision it was asked for and returns the records."""
    import datasets
    import huggingface_hub

    calls = {"loaded": [], "fail": False}

    def dataset_info(self, repo_id, revision=None, **kw):
        if calls["fail"]:
            raise OSError("no network")
        assert (repo_id, revision) == ("org/limo", "main")
        return types.SimpleNamespace(sha=SHA)

    def load_dataset(path, name=None, split=None, revision=None, **kw):
        calls["loaded"].append((path, name, split, revision))
        return types.SimpleNamespace(to_list=lambda: sft_records(5))

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def corpus():
    return CorpusSettings(schema="limo", fields={}, max_items=None, sample_seed=0, source=SOURCE)


def test_materialised_hub_data_is_read_at_the_resolved_commit(hub, tmp_path):
    out = tmp_path / "sft.parquet"
    materialize_sft(corpus(), out)
    assert hub["loaded"] == [("org/limo", None, "train", SHA)]
    src = read_metadata(out)["source"]["hub"]
    assert src["revision"] == SHA and src["requested_revision"] == "main"
    assert read_metadata(out)["n_records"] == 5


def test_without_the_hub_the_configured_revision_is_read_and_marked(hub, tmp_path):
    hub["fail"] = True
    out = tmp_path / "sft.parquet"
    materialize_sft(corpus(), out)
    assert hub["loaded"] == [("org/limo", None, "train", "main")]
    src = read_metadata(out)["source"]["hub"]
    assert src["revision"] == "main" and src["revision_resolved"] is False


def test_other_sources_are_not_touched():
    local = {"local": {"path": "x.jsonl", "format": "auto"}}
    assert corpora.pin_revision(local) is local
