"""Fine-tuning a tiny random model: loss masking and value, determinism, LoRA merge, checkpoints."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import make_model, make_tokenizer, sft_records

from stsflow.config.settings import FinetuneSettings
from stsflow.finetune import checkpoint as ft
from stsflow.finetune.checkpoint import save_checkpoint
from stsflow.finetune.train import build_examples, finetune
from stsflow.text.segments import Segmenter


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def base(tok):
    return make_model(len(tok), seed=0, n_layers=2)


def records(n=16):
    return [{**r, "solution": r["solution"][:40]} for r in sft_records(n)]


def direct_loss(model, examples) -> float:
    """Token-weighted mean CE over response tokens, one example at a time, no padding."""
    total, n = 0.0, 0
    with torch.no_grad():
        for ids, labels in examples:
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            target = torch.tensor(labels[1:])
            mask = target != -100
            total += float(F.cross_entropy(logits[mask], target[mask], reduction="sum"))
            n += int(mask.sum())
    return total / n


def cfg(**kw):
    """The schema's recipe, made small for a tiny model."""
    base_kw = dict(method="full", epochs=1, lr=1e-2, batch_size=8, micro_batch_size=4,
                   max_length=256, warmup_ratio=0.1, seed=0)
    base_kw.update(kw)
    return FinetuneSettings.with_defaults(**base_kw)


@pytest.mark.parametrize("chat", [True, False])
def test_labels_mask_exactly_non_response(tok, chat):
    seg = Segmenter.for_tokenizer(tok, chat)
    recs = records(4)
    exs = build_examples(recs, seg)
    assert len(exs) == 4
    for rec, (ids, labels) in zip(recs, exs):
        prompt = seg.head() + seg.query(rec, "sft")
        resp = seg.response(rec, "sft")
        assert ids == prompt + resp
        assert labels[: len(prompt)] == [-100] * len(prompt)
        assert labels[len(prompt):] == resp
        assert all(t != -100 for t in resp)
    # truncation keeps the left part; an example left without response tokens is dropped
    n_prompt = len(seg.head() + seg.query(recs[0], "sft"))
    ids, labels = build_examples(recs[:1], seg, max_length=n_prompt + 3)[0]
    assert len(ids) == n_prompt + 3 and labels[-3:] == ids[-3:]
    assert build_examples(recs[:1], seg, max_length=n_prompt) == []


def test_first_step_loss_is_response_only_cross_entropy(tok, base):
    model = copy.deepcopy(base)
    recs = records(16)
    exs = build_examples(recs, Segmenter.for_tokenizer(tok, True), 256)
    expected = direct_loss(model, exs)
    lines = []
    hist = finetune(model, tok, recs, cfg(batch_size=16, micro_batch_size=4, max_steps=1),
                    use_chat_template=True, log=lines.append)
    assert hist["n_steps"] == 1 and len(hist["losses"]) == 1
    assert hist["losses"][0] == pytest.approx(expected, rel=1e-5)
    assert hist["tokens_seen"] == sum(len(i) for i, _ in exs)
    assert hist["response_tokens_seen"] == sum(sum(x != -100 for x in lab[1:]) for _, lab in exs)
    assert any(line.startswith("step 1/1 ") and "tok/s" in line and "lr" in line for line in lines)


def test_loss_does_not_depend_on_micro_batch_split(tok, base):
    recs = records(16)
    outs = []
    # micro-batches of 16, 1 and 4 rows, and of 16 rows within a budget of 200 tokens each
    for micro, budget in ((16, None), (1, None), (4, None), (16, 200)):
        model = copy.deepcopy(base)
        hist = finetune(model, tok, recs, cfg(batch_size=16, micro_batch_size=micro, max_steps=3,
                                              warmup_ratio=0.0, lr=1e-3,
                                              micro_batch_tokens=budget),
                        use_chat_template=True, log=lambda s: None)
        outs.append((hist["losses"], hist["model"].state_dict()))
    for losses, state in outs[1:]:
        assert losses == pytest.approx(outs[0][0], rel=1e-5)
        for k, v in state.items():
            torch.testing.assert_close(v, outs[0][1][k], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_gradient_checkpointing_same_result(tok, base, method):
    recs = records(8)
    hists = [finetune(copy.deepcopy(base), tok, recs,
                      cfg(method=method, max_steps=2, warmup_ratio=0.0, gradient_checkpointing=gc),
                      use_chat_template=True, log=lambda s: None) for gc in (False, True)]
    assert hists[1]["losses"] == pytest.approx(hists[0]["losses"], rel=1e-5)
    for k, v in hists[0]["model"].state_dict().items():
        torch.testing.assert_close(hists[1]["model"].state_dict()[k], v, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method,lr", [("full", 1e-2), ("lora", 5e-2)])
def test_training_reduces_loss(tok, base, method, lr):
    model = copy.deepcopy(base)
    recs = records(16)
    exs = build_examples(recs, Segmenter.for_tokenizer(tok, True), 256)
    before = direct_loss(model, exs)
    hist = finetune(model, tok, recs, cfg(method=method, lr=lr, epochs=6, batch_size=8,
                                          micro_batch_size=8), use_chat_template=True,
                    log=lambda s: None)
    final = ft.plain(hist["model"])  # LoRA: the adapter merged into the base
    after = direct_loss(final, exs)
    assert hist["n_steps"] == 12 == hist["total_steps"]
    # the random tiny model's frozen lm_head caps what attention-only LoRA can reach
    assert after < before - (0.3 if method == "full" else 0.1), (before, after)
    assert hist["losses"][-1] < hist["losses"][0]
    assert type(final).__name__ == "LlamaForCausalLM"
    assert not any("lora" in n for n, _ in final.named_parameters())
    assert all(p.dtype == torch.float32 for p in final.parameters())
    assert not final.training
    if method == "lora":  # only the targeted projections moved
        base_state = base.state_dict()
        for name, p in final.state_dict().items():
            moved = not torch.equal(p, base_state[name])
            assert moved == any(t in name for t in ("q_proj", "k_proj", "v_proj", "o_proj")), name


@pytest.mark.parametrize("method", ["full", "lora"])
def test_same_seed_same_weights(tok, base, method):
    recs = records(16)
    states = []
    for seed in (3, 3, 4):
        model = copy.deepcopy(base)
        hist = finetune(model, tok, recs, cfg(method=method, seed=seed, batch_size=4,
                                              micro_batch_size=2, max_steps=4, lr=1e-2),
                        use_chat_template=True, log=lambda s: None)
        states.append(hist["model"].state_dict())
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_schedule_warmup_then_cosine(tok, base):
    model = copy.deepcopy(base)
    hist = finetune(model, tok, records(8), cfg(epochs=2, batch_size=1, micro_batch_size=1,
                                                max_steps=10, warmup_ratio=0.2, lr=1e-3),
                    use_chat_template=False, log=lambda s: None)
    lrs = hist["lrs"]
    assert hist["warmup_steps"] == 2 and len(lrs) == 10
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(5e-4) and lrs[2] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    cos = [0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) * 1e-3 for s in range(2, 10)]
    assert lrs[2:] == pytest.approx(cos)


def test_config_validation():
    with pytest.raises(ValueError):
        FinetuneSettings.with_defaults(batch_size=6, micro_batch_size=4)
    with pytest.raises(ValueError):
        FinetuneSettings.with_defaults(method="qlora")
    c = FinetuneSettings.with_defaults(batch_size=256, micro_batch_size=4)
    assert c.grad_accum == 64 and c.betas == (0.9, 0.95) and c.weight_decay == 0.01


def test_checkpoint_atomic_and_reloadable(tok, base, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "ckpt"

    def boom(*a, **k):
        raise OSError("simulated crash before rename")

    with monkeypatch.context() as m:
        m.setattr(os, "rename", boom)
        with pytest.raises(OSError, match="simulated"):
            save_checkpoint(base, tok, out, {"seed": 0})
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left behind
    assert not ft.is_complete_checkpoint(out)

    save_checkpoint(base, tok, out, {"seed": 0, "method": "full"})
    assert ft.is_complete_checkpoint(out)
    assert ft.read_checkpoint_meta(out) == {"seed": 0, "method": "full"}
    assert any(p.suffix == ".safetensors" for p in out.iterdir())
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    with pytest.raises(FileExistsError):
        save_checkpoint(base, tok, out, {})

    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    tok2 = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tok2("Question: 1 + 2?", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, base(input_ids=ids).logits)

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    assert not ft.is_complete_checkpoint(partial)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_adapter_checkpoint_loads_as_the_merged_model_training_produced(tiny_model_dir, tmp_path,
                                                                        dtype):
    """A LoRA checkpoint keeps the adapter; loading it (merged into its base) gives exactly the
    weights of the trained model merged in memory and cast to the model's dtype, which is what a
    saved merged copy loaded in that dtype had."""
    from stsflow.config.settings import ModelSettings
    from stsflow.jobs import prepare as prepare_job
    from stsflow.models.load import load_model

    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), tmp_path / "base")
    model, tok, _ = load_model(tmp_path / "base", dtype, "cpu")
    hist = finetune(model, tok, records(8), cfg(method="lora", lr=5e-2, batch_size=4,
                                                 micro_batch_size=2, max_steps=2),
                    use_chat_template=True, log=lambda s: None)
    save_checkpoint(hist["model"], tok, tmp_path / "ckpt", {"method": "lora"},
                    base_dir=tmp_path / "base")
    assert not (tmp_path / "ckpt" / "model.safetensors").exists()
    expected = ft.plain(hist["model"]).to(getattr(torch, dtype)).state_dict()
    loaded, _, info = load_model(tmp_path / "ckpt", dtype, "cpu")
    got = loaded.state_dict()
    assert info["adapter"] is True and got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name].dtype == getattr(torch, dtype)
        assert torch.equal(got[name], value), name
    with pytest.raises(ValueError, match="base_dir"):
        save_checkpoint(hist["model"], tok, tmp_path / "none", {})
