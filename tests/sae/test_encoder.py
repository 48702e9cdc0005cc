"""The exported fast encoder reproduces sae-lens's encode for every architecture it accepts."""

from __future__ import annotations

import pytest
import torch

from stsflow.sae.encoder import SparseEncoder, UnsupportedSAE, export_checked


def _randomize(sae, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
    return sae


def _saes():
    from sae_lens import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )

    yield "topk", _randomize(TopKSAE(TopKSAEConfig(d_in=16, d_sae=64, k=5)))
    yield "topk-no-rescale", _randomize(TopKSAE(TopKSAEConfig(
        d_in=16, d_sae=64, k=5, rescale_acts_by_decoder_norm=False)))
    yield "standard", _randomize(StandardSAE(StandardSAEConfig(d_in=16, d_sae=64)))
    yield "jumprelu", _randomize(JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=64)))
    yield "no-b-dec", _randomize(StandardSAE(StandardSAEConfig(d_in=16, d_sae=64,
                                                               apply_b_dec_to_input=False)))


@pytest.mark.parametrize("name,sae", list(_saes()), ids=lambda v: v if isinstance(v, str) else "")
def test_fast_encoder_equals_sae_lens(name, sae, tmp_path):
    x = torch.randn(200, 16) * 3
    assert export_checked(sae, tmp_path, x)
    enc = SparseEncoder.load(tmp_path)
    y = torch.randn(50, 16) * 3  # other inputs than the check used
    torch.testing.assert_close(enc.encode(y), sae.encode(y), rtol=1e-5, atol=1e-5)
    assert enc.width == 64


def test_unsupported_options_fall_back_to_sae_lens(tmp_path):
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=64, normalize_activations="layer_norm"))
    with pytest.raises(UnsupportedSAE):
        SparseEncoder.from_sae(sae)
    assert not export_checked(sae, tmp_path, torch.randn(10, 16))
    assert not (tmp_path / "encoder.json").exists()


def test_schema_architectures_are_the_trainable_registry_entries():
    """The schema's sae.train.architecture enum equals the registered architectures that stsflow
    can train; every registered architecture has a fast-encoder activation."""
    from stsflow.config.settings import schema_section
    from stsflow.sae.architectures import ARCHITECTURES, by_activation, trainable

    enum = schema_section("$defs.sae.train")["properties"]["architecture"]["enum"]
    assert sorted(enum) == sorted(trainable())
    for name, arch in ARCHITECTURES.items():
        assert by_activation(arch.activation) is arch, name
