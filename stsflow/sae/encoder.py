"""SAE encoder for extraction jobs, without importing sae-lens.

Importing sae-lens costs seconds per process (it pulls in all of TransformerLens:
docs/performance.md), which every extraction job would pay. Extraction only needs ``encode``, so ``prepare_sae`` exports the
encoder weights of the sae-lens SAE once (``encoder.safetensors`` + ``encoder.json``) and checks
on real activations that this module's ``encode`` equals sae-lens's; architectures or options it
does not cover are refused at that point and extraction falls back to sae-lens.

Covered: the architectures of ``stsflow.sae.architectures`` (standard ReLU, TopK, JumpReLU); ``apply_b_dec_to_input``; TopK's
``rescale_acts_by_decoder_norm``; ``normalize_activations`` none.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from stsflow.sae.architectures import ARCHITECTURES, by_activation

WEIGHTS, CONFIG = "encoder.safetensors", "encoder.json"


class UnsupportedSAE(ValueError):
    pass


class SparseEncoder:
    def __init__(self, W_enc, b_enc, b_dec, *, activation: str, apply_b_dec: bool,
                 k: int | None = None, threshold=None, scale=None):
        self.W_enc, self.b_enc, self.b_dec = W_enc, b_enc, b_dec
        self.activation, self.apply_b_dec, self.k = activation, apply_b_dec, k
        self.threshold, self.scale = threshold, scale

    @property
    def width(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def to(self, device) -> "SparseEncoder":
        """The same encoder with its tensors on ``device`` (dtype kept)."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return SparseEncoder(move(self.W_enc), move(self.b_enc), move(self.b_dec),
                             activation=self.activation, apply_b_dec=self.apply_b_dec, k=self.k,
                             threshold=move(self.threshold), scale=move(self.scale))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x)

    # activations whose value on an active dimension is the pre-activation itself (ReLU, TopK,
    # JumpReLU): for them ``selected`` needs only the chosen columns with autograd
    GATED = ("relu", "topk", "jumprelu")

    def selected(self, x: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
        """``activations(x)[..., dims]``, differentiable in ``x``, with only the chosen columns
        kept for the backward pass. Which dimensions are active (TopK: among the k largest of
        the whole width) is found without gradient; the values are then the chosen columns'
        pre-activations recomputed with it, zero where inactive: equal to the full encoding's,
        and the same gradient, which is 1 through an active dimension and 0 elsewhere for these
        activations. Others fall back to the full encoding."""
        if self.activation not in self.GATED:
            return self.activations(x).index_select(-1, dims)
        with torch.no_grad():
            active = self.activations(x).index_select(-1, dims) != 0
        x = x.to(self.dtype)
        if self.apply_b_dec:
            x = x - self.b_dec
        pre = x @ self.W_enc.index_select(1, dims) + self.b_enc.index_select(0, dims)
        if self.scale is not None:
            pre = pre * self.scale.index_select(0, dims)
        return pre * active.to(pre.dtype)

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """``encode`` with autograd on: differentiable in ``x`` (selective fine-tuning sends
        gradients through a frozen encoder to the maps of earlier layers)."""
        x = x.to(self.dtype)
        if self.apply_b_dec:
            x = x - self.b_dec
        pre = x @ self.W_enc + self.b_enc
        if self.scale is not None:
            pre = pre * self.scale
        return by_activation(self.activation).activate(pre, self)

    @classmethod
    def from_sae(cls, sae) -> "SparseEncoder":
        cfg = sae.cfg
        arch = cfg.architecture()
        if getattr(cfg, "normalize_activations", "none") not in ("none", None):
            raise UnsupportedSAE(f"normalize_activations={cfg.normalize_activations}")
        if getattr(cfg, "reshape_activations", "none") not in ("none", None):
            raise UnsupportedSAE(f"reshape_activations={cfg.reshape_activations}")
        p = {n: t.detach().clone() for n, t in sae.named_parameters()}
        if arch not in ARCHITECTURES:
            raise UnsupportedSAE(f"architecture {arch!r}")
        kw = dict(apply_b_dec=bool(cfg.apply_b_dec_to_input),
                  activation=ARCHITECTURES[arch].activation,
                  **ARCHITECTURES[arch].encoder_params(cfg, p))
        return cls(p["W_enc"], p["b_enc"], p["b_dec"], **kw)

    def save(self, directory: Path | str) -> None:
        from safetensors.torch import save_file

        tensors = {"W_enc": self.W_enc, "b_enc": self.b_enc, "b_dec": self.b_dec}
        for name in ("threshold", "scale"):
            if getattr(self, name) is not None:
                tensors[name] = getattr(self, name)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(directory) / WEIGHTS))
        (Path(directory) / CONFIG).write_text(json.dumps(
            {"activation": self.activation, "apply_b_dec": self.apply_b_dec, "k": self.k},
            indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path | str, device: str = "cpu") -> "SparseEncoder":
        from safetensors.torch import load_file

        from stsflow.io.files import check_safetensors, read_json

        check_safetensors(Path(directory) / WEIGHTS)
        t = load_file(str(Path(directory) / WEIGHTS), device=str(device))
        cfg = read_json(Path(directory) / CONFIG)
        return cls(t["W_enc"], t["b_enc"], t["b_dec"], activation=cfg["activation"],
                   apply_b_dec=cfg["apply_b_dec"], k=cfg["k"], threshold=t.get("threshold"),
                   scale=t.get("scale"))


def export_checked(sae, directory: Path | str, sample: torch.Tensor) -> bool:
    """Export ``sae``'s encoder into ``directory`` if it reproduces ``sae.encode`` on ``sample``
    (activations of the hooked layer); return whether it was exported."""
    try:
        enc = SparseEncoder.from_sae(sae)
    except UnsupportedSAE:
        return False
    with torch.no_grad():
        ref = sae.encode(sample.to(sae.W_enc.device, sae.W_enc.dtype))
        got = enc.encode(sample.to(enc.device))
    tol = 1e-4 * max(float(ref.abs().max()), 1.0)
    if ref.shape != got.shape or float((ref - got).abs().max()) > tol:
        return False
    enc.save(directory)
    return True
