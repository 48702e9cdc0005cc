"""Full fine-tuning sharded over processes (finetune.processes, FSDP2): through the job path, two
CPU processes on the gloo backend train the tiny model to the weights one process trains, and
the checkpoint, history and metadata are those of a one-process run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import sft_records
from safetensors.torch import load_file

from stsflow.config.settings import FinetuneSettings, ModelSettings
from stsflow.data import corpora
from stsflow.finetune.distributed import rank_rounds
from stsflow.jobs import prepare as prepare_job
from stsflow.jobs import validate as validate_job

MSPEC = {"source": {"local": {"path": "unused: the jobs read the prepared directory"}},
         "dtype": "float32", "device": "cpu", "chat_template": True, "batch_size": 3,
         "max_length": 512}
# 10 records, batch 4 of micro-batches of 1: steps of 4, 4 and 2 micro-batches, so the last
# step gives each of 2 ranks one and 3 ranks an uneven share (weight-0 rounds)
RECIPE = {"epochs": 2, "lr": 1e-3, "batch_size": 4, "micro_batch_size": 1, "max_length": 128,
          "warmup_ratio": 0.0, "weight_decay": 0.01, "grad_clip": 1.0}


@pytest.mark.parametrize("n,size", [(4, 2), (5, 2), (2, 3), (1, 2), (7, 3)])
def test_rank_rounds_cover_every_micro_batch_once_in_equal_rounds(n, size):
    shares = [rank_rounds(n, r, size) for r in range(size)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == -(-n // size)
    counted = sorted(i for s in shares for i, w in s if w == 1.0)
    assert counted == list(range(n))
    assert all(w in (0.0, 1.0) for s in shares for _, w in s)
    assert rank_rounds(n, 0, 1) == [(i, 1.0) for i in range(n)]


@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("fsdp")
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), d / "model")
    corpora.write_records(sft_records(10), d / "sft.parquet")
    (d / "base.safetensors").symlink_to(tiny_model_dir / "model.safetensors")
    return d


def run(d, name, processes, **recipe):
    recipe = FinetuneSettings.with_defaults("full", 0, processes=processes, **{**RECIPE, **recipe})
    validate_job.finetune(d / "model", ModelSettings.with_defaults(**MSPEC), d / "sft.parquet",
                          recipe, d / name, d / f"{name}.history.parquet", threads=2)
    return (load_file(d / name / "model.safetensors"),
            pq.read_table(d / f"{name}.history.parquet").to_pandas(),
            json.loads((d / name / "stsflow_meta.json").read_text()))


def assert_same_training(base, one, many, processes):
    """The sharded run's weights, losses and counts against the one-process run's."""
    (w1, hist1, meta1), (w2, hist2, meta2) = one, many
    assert set(w1) == set(w2) and set(w1) <= set(base)
    moved = max(float((w1[k] - base[k]).abs().max()) for k in w1)
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"processes {processes}: moved {moved:.2e}, max |diff| {diff:.2e}")
    # training moved the weights by ~3.5e-3; the ranks' sums differ from one process's at
    # float32 rounding (4.5e-8 for 2, 5.6e-7 for 3: its factor 3 is inexact), far below
    assert moved > 1e-3 and diff < 1e-3 * moved, (moved, diff)
    np.testing.assert_allclose(hist2["loss"], hist1["loss"], rtol=1e-5)
    np.testing.assert_allclose(hist2["grad_norm"], hist1["grad_norm"], rtol=1e-4)
    assert meta2["processes"] == processes and "processes" not in meta1
    assert meta2["n_steps"] == meta1["n_steps"] == 6
    assert meta2["tokens_seen"] == meta1["tokens_seen"]
    assert meta2["n_trainable"] == meta1["n_trainable"]


@pytest.fixture(scope="module")
def one_process(job):
    return run(job, "one", 1)


# 3 ranks: steps of 4 micro-batches leave two ranks a weight-0 round (rank_rounds)
@pytest.mark.parametrize("processes", [2, 3])
def test_gloo_processes_train_the_weights_one_process_trains(job, one_process, processes):
    base = load_file(job / "base.safetensors")
    many = run(job, f"p{processes}", processes)
    assert_same_training(base, one_process, many, processes)
    assert one_process[1]["grad_norm"].max() > RECIPE["grad_clip"]  # clipping took part
    assert one_process[2]["n_trainable"] == sum(v.numel() for v in base.values())
    assert not list(job.glob(f"p{processes}.tmp-*"))


def test_sharded_with_checkpointing_padded_micro_batches_and_no_clipping(job):
    """The presets' settings: activation checkpointing and micro-batches of 2 (padded to the
    longer example); no clipping (the norm over the shards alone)."""
    base = load_file(job / "base.safetensors")
    kw = dict(gradient_checkpointing=True, micro_batch_size=2, grad_clip=None)
    assert_same_training(base, run(job, "ck1", 1, **kw), run(job, "ck2", 2, **kw), 2)


def test_tied_embeddings_are_saved_once_as_one_process_saves_them(tmp_path_factory):
    """A model whose LM head is its embedding (Gemma, SmolLM2): the gathered checkpoint holds the
    same keys as a one-process run's, and loads back as the model it trained."""
    from conftest import make_tokenizer
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tied")
    tok = make_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1,
        eos_token_id=3, tie_word_embeddings=True))
    model.save_pretrained(d / "src")
    tok.save_pretrained(d / "src")
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(d / "src")}}), d / "model")
    corpora.write_records(sft_records(10), d / "sft.parquet")
    (d / "base.safetensors").symlink_to(d / "src" / "model.safetensors")
    one, many = run(d, "one", 1), run(d, "two", 2)
    assert "lm_head.weight" not in many[0]
    assert_same_training(load_file(d / "base.safetensors"), one, many, 2)
    loaded = AutoModelForCausalLM.from_pretrained(d / "two")
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert torch.equal(loaded.model.embed_tokens.weight, many[0]["model.embed_tokens.weight"])


def test_only_full_runs_are_sharded():
    with pytest.raises(ValueError, match="above 1 only for a method that shards"):
        FinetuneSettings.with_defaults("lora", 0, processes=2, **RECIPE)


def test_a_failing_rank_fails_the_job_and_its_error_is_in_the_job_log(job, tmp_path):
    recipe = FinetuneSettings.with_defaults("full", 0, processes=2, **RECIPE)
    with pytest.raises(RuntimeError, match="distributed fine-tuning failed"):
        validate_job.finetune(job / "model", ModelSettings.with_defaults(**MSPEC),
                              tmp_path / "missing.parquet", recipe, tmp_path / "ckpt",
                              tmp_path / "h.parquet", threads=2, log_path=tmp_path / "job.log")
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "h.parquet").exists()
    text = (tmp_path / "job.log").read_text()
    assert "rank 0 of 2 failed" in text and "rank 1 of 2 failed" in text
    assert "FileNotFoundError" in text and "missing.parquet" in text



def test_the_sharded_rule_takes_every_run_the_recipe_shards():
    """finetune_sharded's wildcard and the recipe's processes (given to runs of a method that
    shards: full) name the same runs, plain or on a data mixture."""
    import re

    from stsflow.mode import MIX_STRATEGIES, RunMethod, trained_method_pattern

    runs = ["full", "lora", "grpo", "sae_select-top-k8"]
    runs += [f"{r}-mix_{s}" for r in ("full", "lora") for s in MIX_STRATEGIES]
    sharded = trained_method_pattern(shards_only=True)
    for run in runs:
        assert bool(re.fullmatch(sharded, run)) == (RunMethod.parse(run).method == "full"), run
        assert bool(re.fullmatch(sharded, run)) == RunMethod.parse(run).registered.shards


def test_a_rank_of_a_process_group_trains_only_full_fine_tuning(tiny, monkeypatch):
    """Started as one rank of several (a user's own torchrun), a LoRA run is refused rather than
    trained independently on every rank."""
    import copy

    from stsflow.finetune import distributed, train

    model, tok = tiny
    monkeypatch.setattr(distributed, "world", lambda: (0, 2))
    recipe = FinetuneSettings.with_defaults("lora", 0, **RECIPE)
    with pytest.raises(ValueError, match="only a method that shards runs over ranks"):
        train.finetune(copy.deepcopy(model), tok, sft_records(4), recipe, use_chat_template=True)
