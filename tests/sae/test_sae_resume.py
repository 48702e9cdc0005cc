"""SAE training resumes after a kill (stsflow.sae.train, stsflow.resume): the prepare_sae job,
in a subprocess on the tiny model, killed (SIGKILL) or stopped (SIGTERM) after its first
checkpoint and run again, writes the SAE and quality figures an uninterrupted job writes."""

from __future__ import annotations

import json
import signal

import kill_helpers
import pytest
import torch
from conftest import make_model, make_tokenizer, sft_records
from safetensors.torch import load_file

from stsflow.config.settings import ModelSettings
from stsflow.jobs import prepare as prepare_job
from stsflow.sae import info as sae_info
from stsflow.sae.activations import ActivationStream

LAYER = 1
# 12800 tokens in batches of 64: 200 steps, a checkpoint every 20 (steps take milliseconds: the
# run must outlast the signal sent after its first checkpoint)
TRAIN = {"architecture": "topk", "width": 64, "k": 4, "tokens": 12800, "batch_tokens": 64,
         "lr": 3e-3, "context_length": 32, "seed": 0, "corpora": ["arith"]}
RUNNER = """
import json, sys
from stsflow.config.settings import ModelSettings, SaeSettings
from stsflow.jobs import prepare
from stsflow.jobs.common import setup_logging
spec = json.load(open(sys.argv[1]))
setup_logging(spec["log"])
prepare.prepare_sae(spec["model_dir"], ModelSettings.from_config(spec["model"]), spec["layer"],
                    SaeSettings.with_defaults(**spec["sae"]),
                    {"arith": ("sft", spec["sft"])}, ["arith"], ["arith"], spec["out"],
                    where="models.tiny.layers.1.sae", threads=1)
"""


@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):
    from stsflow.data import corpora

    root = tmp_path_factory.mktemp("sae_resume")
    source = {"local": {"path": str(tiny_model_dir)}}
    prepare_job.prepare_model(ModelSettings.with_defaults(source=source), root / "model")
    corpora.write_records(sft_records(24), root / "sft.parquet", {"source": "test"})
    return root


def start(root, name):
    model = dict(ModelSettings.with_defaults(source={"local": {"path": "unused"}}).__dict__,
                 device="cpu", batch_size=4, max_length=256)
    return kill_helpers.start(RUNNER, {
        "model_dir": str(root / "model"), "model": model, "layer": LAYER,
        "sae": {"train": TRAIN, "eval_tokens": 300}, "sft": str(root / "sft.parquet"),
        "out": str(root / name), "log": str(root / f"{name}.log")}, root, name)


@pytest.fixture(scope="module")
def uninterrupted(job):
    log = kill_helpers.finish(start(job, "ref"), job / "ref.log")
    assert "SAE L1 step 200/200" in log and not kill_helpers.RESUME_LINE.search(log)
    return job / "ref"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_sae_training_resumes_to_the_uninterrupted_sae(job, uninterrupted, sig):
    name = f"sae-{sig.name}"
    killed = kill_helpers.interrupt(start(job, name), job / f"{name}.log", sig)
    assert not (job / name).exists()
    resumed = kill_helpers.finish(start(job, name), job / f"{name}.log")
    kill_helpers.check_resumed(killed, resumed, 200, job / f"{name}.resume")
    ref, got = load_file(uninterrupted / "sae_weights.safetensors"), load_file(
        job / name / "sae_weights.safetensors")
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    a, b = (json.loads((d / sae_info.MANIFEST).read_text()) for d in (uninterrupted, job / name))
    assert {k: a[k] for k in sae_info.FIGURES} == {k: b[k] for k in sae_info.FIGURES}
    assert not (job / f"{name}.resume").exists()


def test_activation_stream_restored_from_its_state_reads_the_same_batches():
    """Half-way through, a stream's state loaded into a fresh stream: the batches that follow
    are those the first stream yields (buffer, pass order and generator included)."""
    tok = make_tokenizer()
    model = make_model(len(tok))
    g = torch.Generator().manual_seed(3)
    windows = [(torch.randint(4, len(tok), (int(n),), generator=g).tolist(), 2)
               for n in torch.randint(10, 40, (23,), generator=g)]
    kw = dict(batch_tokens=16, total_tokens=16 * 60, model_batch=3, seed=7, device="cpu")
    whole = list(ActivationStream(model, 1, windows, **kw))
    first = ActivationStream(model, 1, windows, **kw)
    got = [next(first) for _ in range(17)]
    second = ActivationStream(model, 1, windows, **kw)
    second.load_state_dict(first.state_dict())
    got += list(second)
    assert len(whole) == len(got) == 60
    assert all(torch.equal(a, b) for a, b in zip(whole, got))
    # the state was mid-buffer: some batches come from the shuffled buffer it carried
    assert first.ready is not None
