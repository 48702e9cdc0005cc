"""The registry of SAE architectures (as sae-lens registers its SAE classes): for each, how the
fast encoder turns pre-activations into features, which parameters it takes from a sae-lens SAE,
and, where stsflow can train one, how to build its sae-lens training SAE. A new architecture is
one ``register_architecture`` call; a test keeps the schema's ``sae.train.architecture`` enum
equal to the trainable entries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Architecture:
    name: str  # sae-lens's architecture name (cfg.architecture())
    activation: str  # recorded in encoder.json
    activate: Callable  # (pre-activations, encoder) -> features
    encoder_params: Callable  # (sae-lens cfg, parameters) -> extra encoder fields
    # (d_in, SaeTrainSettings, device, **sae-lens options) -> training SAE; None: not here
    training: Callable | None


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(name: str, *, activation: str, activate, encoder_params=None,
                          training=None) -> None:
    ARCHITECTURES[name] = Architecture(name, activation, activate,
                                       encoder_params or (lambda cfg, p: {}), training)


def by_activation(activation: str) -> Architecture:
    return next(a for a in ARCHITECTURES.values() if a.activation == activation)


def trainable() -> list[str]:
    return [name for name, a in ARCHITECTURES.items() if a.training is not None]


# Inputs are scaled to norm sqrt(d_in) during training (the factor is folded into the weights
# afterwards): residual streams have model-specific norms far from the initialisation.
_TRAIN_NORM = "expected_average_only_in"


def _train_standard(d_in, spec, device, **options):  # the TopK options do not apply
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig

    return StandardTrainingSAE(StandardTrainingSAEConfig(
        d_in=d_in, d_sae=spec.width, l1_coefficient=spec.l1_coefficient, device=device,
        normalize_activations=_TRAIN_NORM))


def _train_topk(d_in, spec, device, **options):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    return TopKTrainingSAE(TopKTrainingSAEConfig(
        d_in=d_in, d_sae=spec.width, k=spec.k, device=device, normalize_activations=_TRAIN_NORM,
        **options))


def _topk(pre: torch.Tensor, enc) -> torch.Tensor:
    values, indices = torch.topk(pre, k=enc.k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, indices, values.relu())


def _topk_params(cfg, p) -> dict:
    out = {"k": int(cfg.k)}
    if getattr(cfg, "rescale_acts_by_decoder_norm", False):
        out["scale"] = p["W_dec"].norm(dim=-1)
    return out


register_architecture("standard", activation="relu", activate=lambda pre, enc: pre.relu(),
                      training=_train_standard)
register_architecture("topk", activation="topk", activate=_topk, encoder_params=_topk_params,
                      training=_train_topk)
register_architecture("jumprelu", activation="jumprelu",
                      activate=lambda pre, enc: pre.relu() * (pre > enc.threshold).to(pre.dtype),
                      encoder_params=lambda cfg, p: {"threshold": p["threshold"]})
