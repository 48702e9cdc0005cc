"""Interrupted fine-tuning resumes to the weights an uninterrupted run trains (stsflow.resume):
the job function the finetune rule's script calls runs in a subprocess on the tiny model, is
killed (SIGKILL) or stopped (SIGTERM, as SLURM stops a job) after its first checkpoint, and is
run again; its final checkpoint and history must equal, bit for bit, those of a run that was never
interrupted. Also: a checkpoint of another recipe is not used, nor a partially written one, and
the checkpoints are gone once the model is written (unless kept)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import kill_helpers
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import REPO, make_sae, sft_records
from safetensors.torch import load_file

from stsflow.config.settings import CheckpointSettings, FinetuneSettings, ModelSettings
from stsflow.data import corpora
from stsflow.jobs import prepare as prepare_job

MSPEC = {"source": {"local": {"path": "unused: the jobs read the prepared directory"}},
         "dtype": "float32", "device": "cpu", "chat_template": True, "batch_size": 3,
         "max_length": 512}
# 12 records, 2 per step: 6 steps an epoch, 48 in all, a checkpoint every 4 (and dropout on,
# so the RNG state matters)
RECIPE = {"epochs": 8, "lr": 1e-3, "batch_size": 2, "micro_batch_size": 1, "max_length": 96,
          "warmup_ratio": 0.1, "weight_decay": 0.01, "grad_clip": 1.0, "lora_dropout": 0.1}
EVERY = 4
SITES = {"layers": [1], "saes": ["main"]}
GRPO = {"steps": 12, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 6,
        "temperature": 1.0, "beta": 0.04, "lr": 1e-3, "loss_type": "grpo"}
# the job as workflow_scripts/finetune.py runs it, from a JSON spec, in its own process
RUNNER = """
import json, sys
from stsflow.config.settings import CheckpointSettings, FinetuneSettings, ModelSettings
from stsflow.jobs import validate
from stsflow.jobs.common import setup_logging
spec = json.load(open(sys.argv[1]))
setup_logging(spec["log"])
validate.finetune(spec["model_dir"], ModelSettings.from_config(spec["model"]), spec["sft"],
                  FinetuneSettings(**spec["recipe"]), spec["out"], spec["history"], threads=1,
                  inputs=spec["inputs"], log_path=spec["log"],
                  checkpoints=CheckpointSettings(**spec["checkpoints"]))
"""


@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):
    """A prepared model, an SFT set, and for sae_select a prepared SAE and a shift table."""
    from stsflow.scores.shift import ranked

    d = tmp_path_factory.mktemp("resume")
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), d / "model")
    corpora.write_records(sft_records(12), d / "sft.parquet")
    (d / "base.safetensors").symlink_to(tiny_model_dir / "model.safetensors")
    make_sae(width=64, k=6, seed=5).save_model(str(d / "sae_files"))
    (d / "sae").mkdir()
    (d / "sae" / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "local", "path": str(d / "sae_files"), "width": 64}))
    pq.write_table(ranked(np.random.default_rng(1).random(64), np.zeros(64)),
                   d / "shift.parquet")
    return d


# name: (method, recipe changes); full-sharded: two gloo processes (FSDP), against a sharded
# run (its sums differ from one process's at float rounding)
RUNS = {"lora": ("lora", {}), "full": ("full", {}), "sae_select": ("sae_select-top-k8", {}),
        "grpo": ("grpo", {}), "full-sharded": ("full", {"processes": 2})}
STEPS = {name: GRPO["steps"] if name == "grpo" else 48 for name in RUNS}


def recipe(name: str, **changes) -> FinetuneSettings:
    method, extra = RUNS[name]
    extra = dict(extra)
    if method.startswith("sae_select"):
        extra["sae_select"] = SITES
    if method == "grpo":
        extra["grpo"] = GRPO
    return FinetuneSettings.with_defaults(method, 0, **{**RECIPE, **extra, **changes})


def start(d, name: str, rec: FinetuneSettings, every=EVERY, keep=False):
    """The finetune job of run ``name`` in a subprocess."""
    inputs = {"site_sae:1": str(d / "sae"), "site_shift:1": str(d / "shift.parquet")} \
        if rec.sae_select else {}
    return kill_helpers.start(RUNNER, {
        "model_dir": str(d / "model"), "model": MSPEC, "sft": str(d / "sft.parquet"),
        "recipe": dataclasses.asdict(rec), "out": str(d / name),
        "history": str(d / f"{name}.history.parquet"), "log": str(d / f"{name}.log"),
        "inputs": inputs, "checkpoints": {"checkpoint_every": every, "keep_checkpoints": keep}},
        d, name)


def run(d, name, rec, **kw) -> str:
    """Run the job to its end; its log."""
    return kill_helpers.finish(start(d, name, rec, **kw), d / f"{name}.log")


def weights(out) -> dict[str, torch.Tensor]:
    """Every tensor the run's checkpoint saved (the whole model, the adapter or the maps)."""
    found = {}
    for f in sorted(out.glob("*.safetensors")):
        found.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    assert found
    return found


def assert_same_run(d, a: str, b: str) -> None:
    wa, wb = weights(d / a), weights(d / b)
    base = load_file(d / "base.safetensors")
    # training moved what it trains (a LoRA B, a map W, the weights of a full run), so equal
    # weights are the same training, not two untouched initialisations
    trained = [v for k, v in wa.items() if "lora_B" in k or k.endswith(".W")] or [
        v - base[k.split(":", 1)[1]] for k, v in wa.items() if k.split(":", 1)[1] in base]
    assert max(float(v.abs().max()) for v in trained) > 0
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ha = pq.read_table(d / f"{a}.history.parquet")
    hb = pq.read_table(d / f"{b}.history.parquet")
    assert ha.column_names == hb.column_names and ha.num_rows == hb.num_rows
    for col in ha.column_names:
        assert ha[col].to_pylist() == hb[col].to_pylist(), col


@pytest.fixture(scope="module")
def uninterrupted(job):
    """Each method's run, never interrupted (computed once a method)."""
    done = {}

    def get(name):
        if name not in done:
            log = run(job, f"{name}-ref", recipe(name))
            assert not kill_helpers.RESUME_LINE.search(log)
            done[name] = f"{name}-ref"
        return done[name]
    return get


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("run_name", list(RUNS))
def test_killed_run_resumes_to_the_uninterrupted_weights(job, uninterrupted, run_name, sig):
    name = f"{run_name}-{sig.name}"
    killed = kill_helpers.interrupt(start(job, name, recipe(run_name)), job / f"{name}.log", sig)
    assert not (job / name).exists()  # no model was written
    resumed = run(job, name, recipe(run_name))
    kill_helpers.check_resumed(killed, resumed, STEPS[run_name], job / f"{name}.resume")
    assert_same_run(job, uninterrupted(run_name), name)
    assert not (job / f"{name}.resume").exists()  # removed once the model is written


# ----------------------------------------------------------------- in one process: the edges


def run_here(d, name, rec, every=EVERY, keep=False, hook=None):
    """The job in this process; its log lines. ``hook``: a forward hook on the model's first
    decoder layer (``hook(count)`` at each forward pass)."""
    import logging

    from stsflow.jobs import validate as validate_job
    from stsflow.models import load as load_mod

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("stsflow")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    original = load_mod.load_model
    calls = [0]

    def load_with_hook(*a, **kw):
        lm, tok, info = original(*a, **kw)
        if hook is not None:
            def count(module, args, out):
                calls[0] += 1
                hook(calls[0])
            lm.model.layers[0].register_forward_hook(count)
        return lm, tok, info
    load_mod.load_model = load_with_hook
    try:
        validate_job.finetune(d / "model", ModelSettings.with_defaults(**MSPEC), d / "sft.parquet",
                              rec, d / name, d / f"{name}.history.parquet", threads=1,
                              checkpoints=CheckpointSettings(checkpoint_every=every,
                                                             keep_checkpoints=keep))
    finally:
        load_mod.load_model = original
        logger.removeHandler(handler)
        logger.setLevel(level)
    return lines


def sigterm_at(n):
    """A hook sending this process SIGTERM at the ``n``-th forward pass."""
    def hook(count):
        if count == n:
            os.kill(os.getpid(), signal.SIGTERM)
    return hook


def test_sigterm_within_a_step_saves_the_state_the_step_started_from(job, uninterrupted):
    """Two micro-batches a step: SIGTERM in the first of step 6 stops the run before the second;
    parameters, optimizer and schedule are still step 5's (only the RNGs moved, and those of
    the step's start are saved), so step 5 is checkpointed, though not due, and resumed from."""
    from stsflow.resume import Interrupted

    with pytest.raises(Interrupted, match="rerun to resume"):
        run_here(job, "lora-midstep", recipe("lora"), hook=sigterm_at(11))
    assert sorted(p.name for p in (job / "lora-midstep.resume").iterdir()) == ["step-00000005"]
    lines = run_here(job, "lora-midstep", recipe("lora"))
    assert any("resuming from step 5/48" in line for line in lines)
    assert_same_run(job, uninterrupted("lora"), "lora-midstep")


def test_a_checkpoint_of_another_recipe_is_not_used(job):
    """A run stopped with lr 1e-3 leaves a checkpoint; the run with lr 2e-3 discards it (and
    says which key changed) and trains from step 0 to the weights of a fresh lr 2e-3 run."""
    from stsflow.resume import Interrupted

    with pytest.raises(Interrupted):
        run_here(job, "lora-changed", recipe("lora"), hook=sigterm_at(21))
    assert (job / "lora-changed.resume" / "step-00000010").is_dir()
    lines = run_here(job, "lora-changed", recipe("lora", lr=2e-3))
    assert any("is not this run's (changed: recipe.lr)" in line for line in lines), lines
    assert not any("resuming" in line for line in lines)
    run_here(job, "lora-lr2", recipe("lora", lr=2e-3))
    assert_same_run(job, "lora-lr2", "lora-changed")


def test_a_partial_checkpoint_is_not_used(job, uninterrupted):
    """Beside a complete checkpoint of step 8: one being written when its job died (a
    ``.partial`` directory) and one whose resume.json never came. Both are removed, not read,
    and the run resumes from step 8."""
    import shutil

    from stsflow.resume import Interrupted

    with pytest.raises(Interrupted):
        run_here(job, "lora-partial", recipe("lora"), hook=sigterm_at(17))
    root = job / "lora-partial.resume"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000008"]
    shutil.copytree(root / "step-00000008", root / "step-00000012.partial")
    shutil.copytree(root / "step-00000008", root / "step-00000016")
    (root / "step-00000016" / "resume.json").unlink()
    lines = run_here(job, "lora-partial", recipe("lora"))
    removed = [line for line in lines if "a partial checkpoint" in line]
    assert len(removed) == 2 and any("step-00000012.partial" in r for r in removed)
    assert any("resuming from step 8/48" in line for line in lines)
    assert_same_run(job, uninterrupted("lora"), "lora-partial")


def test_kept_checkpoints_stay_and_none_without_a_period(job, uninterrupted):
    """keep_checkpoints keeps every checkpoint (not the last step's: the model is written
    then); checkpoint_every 0 writes none. Checkpointing changes no weight: the run without
    checkpoints trains those of the run with one every 4 steps."""
    run_here(job, "lora-kept", recipe("lora"), every=16, keep=True)
    assert sorted(p.name for p in (job / "lora-kept.resume").iterdir()) == [
        "step-00000016", "step-00000032"]
    lines = run_here(job, "lora-none", recipe("lora"), every=0)
    assert not any("checkpoint of step" in line for line in lines)
    assert not (job / "lora-none.resume").exists()
    assert_same_run(job, uninterrupted("lora"), "lora-none")
    assert_same_run(job, uninterrupted("lora"), "lora-kept")


def test_checkpoint_period():
    from stsflow.resume import interval

    assert interval(None, 48) == 5 and interval(None, 40) == 4 and interval(None, 3) == 1
    assert interval(0, 48) is None and interval(7, 48) == 7


def test_checkpoint_settings_are_read_from_the_config_and_are_no_rule_parameter():
    """The script reads them from the config (schema defaults filled); the recipe the finetune
    rule passes (its rerun trigger) never holds them."""
    assert CheckpointSettings.from_config({}) == CheckpointSettings(None, False)
    assert CheckpointSettings.from_config({"finetune": {"checkpoint_every": 3}}) == \
        CheckpointSettings(3, False)
    import yaml

    from stsflow.workflow import Workflow

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.setdefault("finetune", {}).update(checkpoint_every=3, keep_checkpoints=True)
    wf = Workflow(cfg, REPO)
    model, sft = next(iter(wf.models)), next(iter(wf.sfts))
    w = dataclasses.make_dataclass("W", ["model", "sft", "method", "seed"])(
        model, sft, wf.trained_runs[0][0], 0)
    recipe = wf.params.recipe(w)
    assert recipe and not set(recipe) & {"checkpoint_every", "keep_checkpoints"}
    with pytest.raises(Exception, match="checkpoint_every: unknown setting"):
        FinetuneSettings.from_recipe({**RECIPE, "checkpoint_every": 3}, "lora", 0)


def test_a_tied_embedding_is_saved_once_and_resumes(tmp_path):
    """A model whose LM head is its embedding (SmolLM2, Gemma): LoRA's checkpoint holds the
    adapter alone (not the frozen head under its second name), full fine-tuning's the shared
    weight once; both resume to the uninterrupted weights."""
    from conftest import make_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from stsflow.finetune.train import finetune
    from stsflow.resume import Interrupted, Resume

    tok = make_tokenizer()

    def model():
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1,
            eos_token_id=3, tie_word_embeddings=True))

    for method in ("lora", "full"):
        rec = FinetuneSettings.with_defaults(method, 0, **{**RECIPE, "epochs": 2})
        resume = Resume(tmp_path / f"{method}.resume", {"test": method}, every=4, keep=True)

        def train(lm, resume=resume):
            hist = finetune(lm, tok, sft_records(12), rec, use_chat_template=True,
                            log=lambda s: None, resume=resume)
            return {n: p.detach().clone() for n, p in hist["model"].named_parameters()}

        whole = train(model(), resume=None)
        lm, calls = model(), [0]

        def hook(module, args, out):
            calls[0] += 1
            if calls[0] == 13:  # in step 7: step 6 is saved, though not due
                os.kill(os.getpid(), signal.SIGTERM)
        handle = lm.model.layers[0].register_forward_hook(hook)
        with pytest.raises(Interrupted):
            train(lm)
        handle.remove()
        saved = resume.root / "step-00000006" / "dcp"
        from torch.distributed.checkpoint import FileSystemReader

        keys = set(FileSystemReader(str(saved)).read_metadata().state_dict_metadata)
        heads = {k for k in keys if k.startswith("model.") and ("lm_head" in k
                                                                or "embed_tokens" in k)}
        assert heads == (set() if method == "lora" else {"model.model.embed_tokens.weight"})
        resumed = train(model())
        assert whole.keys() == resumed.keys()
        assert all(torch.equal(whole[k], resumed[k]) for k in whole), method


def test_an_unreadable_checkpoint_is_removed_and_the_retry_starts_over(job, uninterrupted):
    """A checkpoint damaged after it was written (here its RNG file cut short) stops the job
    that reads it, with the reason and the fix, and removes the run's checkpoints: the next
    attempt trains from step 0 to the uninterrupted weights, instead of failing again."""
    name = "lora-damaged"
    run(job, name, recipe("lora"), keep=True)  # its checkpoints kept, as after a kill
    root = job / f"{name}.resume"
    last = sorted(root.iterdir())[-1]
    rng = last / "rng-0.pt"
    rng.write_bytes(rng.read_bytes()[:20])
    proc = start(job, name, recipe("lora"), keep=True)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode != 0
    assert "cannot be read" in err and "starts from step 0" in err
    assert not root.exists()
    log = run(job, name, recipe("lora"))
    assert not kill_helpers.RESUME_LINE.search(log.split("cannot be read")[-1])
    assert_same_run(job, uninterrupted("lora"), name)
