"""The gradient-similarity predictor's mean gradients against a direct float64 computation, and
the CountSketch that projects them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import sft_records

from stsflow.features import gradients
from stsflow.finetune.train import build_examples
from stsflow.text.segments import Segmenter

TARGETS = ["q_proj", "v_proj"]


def test_mean_gradient_is_the_normalised_mean_of_adapter_gradients(tiny):
    """At B = 0 the gradient of LoRA's B is (α/r)·dL/dW·Aᵀ: computed here from the base model's
    weight gradients and the adapters' A, without peft's backward."""
    model, tok = tiny
    seg = Segmenter.for_tokenizer(tok, True)
    examples = build_examples(sft_records(4), seg, kind="sft")
    wrapped = copy.deepcopy(model)
    got, meta = gradients.mean_gradient(wrapped, examples, TARGETS, seed=3, dim=0,
                                        log=lambda *a: None)
    # the adapters' A, in the order peft lists the B parameters
    names = [n for n, _ in wrapped.named_parameters() if "lora_B" in n]
    a_of = dict(wrapped.named_parameters())
    a_mats = [a_of[n.replace("lora_B", "lora_A")].detach().double() for n in names]
    base = copy.deepcopy(model).double()
    modules = [n.split(".lora_B")[0].removeprefix("base_model.model.") for n in names]
    direct = []
    for ids, labels in examples:
        base.zero_grad()
        logits = base(input_ids=torch.tensor([ids])).logits[0, :-1]
        target = torch.tensor(labels[1:])
        keep = target != -100
        loss = torch.nn.functional.cross_entropy(logits[keep], target[keep])
        loss.backward()
        g = torch.cat([(base.get_submodule(m).weight.grad @ a.T).reshape(-1)
                       for m, a in zip(modules, a_mats)])  # scaling α/r = 1
        direct.append((g / g.norm()).numpy())
    assert meta["n_params"] == got.size and meta["n_examples"] == 4
    np.testing.assert_allclose(got, np.mean(direct, axis=0), rtol=1e-3, atol=1e-6)


def test_count_sketch_is_seeded_and_keeps_inner_products():
    rng = np.random.default_rng(0)
    n, dim = 30000, 8192
    x = rng.normal(size=n)
    y = 0.6 * x + 0.8 * rng.normal(size=n)  # cosine ≈ 0.6
    params = [("p", torch.zeros(n))]
    s1, s2 = gradients._sketch(params, dim, 5), gradients._sketch(params, dim, 5)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(s1, s2))
    px = gradients.project([torch.from_numpy(x)], s1, dim).numpy()
    py = gradients.project([torch.from_numpy(y)], s1, dim).numpy()
    cos = x @ y / np.linalg.norm(x) / np.linalg.norm(y)
    pcos = px @ py / np.linalg.norm(px) / np.linalg.norm(py)
    assert pcos == pytest.approx(cos, abs=0.03)
    other = gradients._sketch(params, dim, 6)
    assert not torch.equal(other[0][0], s1[0][0])


def test_no_adapter_on_the_targets_is_refused(tiny):
    model, tok = tiny
    seg = Segmenter.for_tokenizer(tok, True)
    examples = build_examples(sft_records(1), seg, kind="sft")
    with pytest.raises(ValueError):
        gradients.mean_gradient(copy.deepcopy(model), examples, ["no_such_module"], 0, 16,
                                log=lambda *a: None)


def test_random_encoder_is_seeded_topk_on_unit_directions():
    from stsflow.features.panel_gather import RandomEncoder

    a, b = RandomEncoder(16, 40, 5, seed=1), RandomEncoder(16, 40, 5, seed=1)
    assert torch.equal(a.W, b.W) and not torch.equal(a.W, RandomEncoder(16, 40, 5, seed=2).W)
    np.testing.assert_allclose(a.W.norm(dim=0).numpy(), 1.0, rtol=1e-6)
    x = torch.randn(30, 16)
    h = a.encode(x)
    assert h.shape == (30, 40) and (h >= 0).all() and ((h > 0).sum(1) <= 5).all()
    pre = x @ a.W  # the k largest projections, ReLU'd, the rest zero
    top = pre.topk(5, dim=1)
    np.testing.assert_allclose(h.gather(1, top.indices).numpy(),
                               top.values.clamp_min(0).numpy(), rtol=1e-6)
    assert float(h.sum()) == pytest.approx(float(top.values.clamp_min(0).sum()), rel=1e-6)
    with pytest.raises(ValueError):
        RandomEncoder(16, 40, 41, seed=0)
