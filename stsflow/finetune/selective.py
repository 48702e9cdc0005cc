"""Selective fine-tuning (docs/method.md#selective-fine-tuning): at each chosen layer, a learnable map W ∈ R^{K×d} adds
h_S(z)·W to the residual stream z after that block, where h_S(z) are the activations of K
dimensions S of the layer's SAE (its encoder frozen); only the maps train.

Choices made here (the paper is silent):

* **S.** ``top``: the K dimensions of rank 1..K in the seed's *predicted* shift table (the ICL
  shift, known before any fine-tuning; ties by the lower index, as ``scores.shift.top_dims``).
  ``random``: K dimensions drawn without replacement from the SAE's width by
  ``numpy.random.default_rng([seed, layer])`` (the control; dimensions that never fire can be
  drawn, as they can be among any K random dimensions).
* **h_S(z).** The SAE's encoding of z restricted to S (TopK still chooses its k among all
  dimensions), in the encoder's own dtype (float32 as prepared), with autograd on, so that the
  map of an earlier layer receives the gradient that flows through a later layer's encoder.
  With the exported encoder (``SparseEncoder.selected``) only S's K columns are kept for the
  backward pass, not batch x tokens x width (the whole encoding is found without gradient):
  what makes a 131k-wide SAE affordable at every site. The encoder's weights never train and
  are not saved with the run.
* **W.** Zero at initialisation (the model starts as the base model, output for output), a
  float32 parameter; ``h_S(z)·W`` is computed in float32 (float64 for a float64 model) and
  cast to the residual stream's dtype.
* **Where.** The block is wrapped (``SelectiveBlock``), not hooked: everything that reads the
  block's output through the model's list of layers (the extraction's tap, the evaluation's
  residual means) sees z + h_S(z)·W, the tuned model's residual stream after that block, and a
  later hook cannot run before the map. (transformers' ``output_hidden_states`` records each
  decoder layer's own output, found by class: at a site it is z, before the map; nothing in
  stsflow reads residuals that way.)
* **Checkpoint.** ``sae_select.safetensors`` (``L<layer>.W`` and ``L<layer>.dims``) beside the
  tokenizer; the metadata names each site's SAE directory (relative to the checkpoint) and the
  sha256 of its manifest, checked when the run is loaded (``stsflow.models.load``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from stsflow.models.tap import decoder_layers
from stsflow.scores.shift import top_dims

if TYPE_CHECKING:
    from stsflow.config.settings import FinetuneSettings

WEIGHTS = "sae_select.safetensors"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    """One map: its ``layer``, the SAE (``sae`` name, prepared directory ``sae_dir``), the
    loaded ``encoder`` (stsflow.sae.prepare.load_sae) and the chosen ``dims`` (sorted)."""

    layer: int
    sae: str
    sae_dir: str
    encoder: object
    dims: np.ndarray


def choose_dims(shift: pa.Table, k: int, select: str, seed: int, layer: int) -> np.ndarray:
    """S for one layer: the top-K of the predicted ``shift`` table, or K drawn with the seed."""
    width = shift.num_rows
    if k > width:
        raise ValueError(f"finetune.sae_select.k: {k} exceeds the width {width} of the SAE at "
                         f"layer {layer}. Fix: K <= {width}")
    if select == "top":
        return top_dims(shift, k).astype(np.int64)
    if select == "random":
        rng = np.random.default_rng([int(seed), int(layer)])
        return np.sort(rng.choice(width, size=k, replace=False)).astype(np.int64)
    raise ValueError(f"finetune.sae_select.select: unknown selection {select!r} (top or random)")


def _encoder_dtype(encoder) -> torch.dtype:
    return encoder.dtype if hasattr(encoder, "dtype") else next(encoder.parameters()).dtype


class SelectiveBlock(torch.nn.Module):
    """A decoder block followed by z ← z + h_S(z)·W. Attributes it does not have are the
    block's (models read e.g. ``attention_type`` from their layers)."""

    def __init__(self, block: torch.nn.Module, site: Site):
        super().__init__()
        self.block = block
        self.layer, self.sae, self.sae_dir = int(site.layer), site.sae, str(site.sae_dir)
        # the encoder stays outside the module's parameters and buffers: frozen, never saved,
        # never cast with the model (a bf16 model still encodes in the encoder's float32)
        if isinstance(site.encoder, torch.nn.Module):
            for p in site.encoder.parameters():
                p.requires_grad_(False)
        object.__setattr__(self, "_encoder", site.encoder)
        # on the block's device: the model is already where it trains when the maps attach
        dev = next(block.parameters()).device
        self.register_buffer("dims", torch.as_tensor(np.asarray(site.dims), dtype=torch.long,
                                                     device=dev))
        d_in = int(site.encoder.W_enc.shape[0])
        self.W = torch.nn.Parameter(torch.zeros(len(site.dims), d_in, dtype=torch.float32,
                                                device=dev))

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["block"], name)

    def encoder_on(self, device):
        enc = self._encoder
        if isinstance(enc, torch.nn.Module):
            if next(enc.parameters()).device != device:
                enc.to(device)
        elif enc.device != device:
            enc = enc.to(device)
            object.__setattr__(self, "_encoder", enc)
        return enc

    def selected(self, z: torch.Tensor) -> torch.Tensor:
        """h_S(z): the activations of the dimensions S, differentiable in z."""
        enc = self.encoder_on(z.device)
        x = z.to(_encoder_dtype(enc))
        if hasattr(enc, "selected"):  # the exported encoder: the K columns kept for backward
            return enc.selected(x, self.dims)
        return enc.encode(x).index_select(-1, self.dims)  # sae-lens: the full encoding

    def forward(self, *args, **kwargs):
        out = self.block(*args, **kwargs)
        z = out[0] if isinstance(out, tuple) else out
        dt = torch.promote_types(z.dtype, torch.float32)  # at least float32, float64 kept
        delta = self.selected(z).to(dt) @ self.W.to(dt)
        z = z + delta.to(z.dtype)
        return (z, *out[1:]) if isinstance(out, tuple) else z


def attach(model, sites: list[Site]):
    """Wrap each site's block in ``model`` (in place): every base parameter frozen, the maps
    trainable and zero. Returns ``model``."""
    for p in model.parameters():
        p.requires_grad_(False)
    layers = decoder_layers(model)
    for site in sites:
        if isinstance(layers[site.layer], SelectiveBlock):
            raise ValueError(f"layer {site.layer} already has a selective map")
        layers[site.layer] = SelectiveBlock(layers[site.layer], site)
    return model


def blocks(model) -> dict[int, SelectiveBlock]:
    """The selective blocks of a model, by layer (empty for any other model)."""
    try:
        layers = decoder_layers(model)
    except ValueError:
        return {}
    return {i: b for i, b in enumerate(layers) if isinstance(b, SelectiveBlock)}


def is_selective(model) -> bool:
    return bool(blocks(model))


def n_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save(model, directory: Path | str) -> list[dict]:
    """Write the maps and chosen dimensions into ``directory``; return each site's record
    (layer, sae, sae_dir as given, k) for the checkpoint's metadata."""
    from safetensors.torch import save_file

    tensors, sites = {}, []
    for layer, b in blocks(model).items():
        tensors[f"L{layer}.W"] = b.W.detach().to("cpu", torch.float32).contiguous()
        tensors[f"L{layer}.dims"] = b.dims.detach().cpu().contiguous()
        sites.append({"layer": layer, "sae": b.sae, "sae_dir": b.sae_dir, "k": int(len(b.dims))})
    save_file(tensors, str(Path(directory) / WEIGHTS))
    return sites


def load_into(model, directory: Path | str, sites: list[dict], encoders: dict[int, object]):
    """Attach the saved maps of a checkpoint ``directory`` to ``model`` (the base, in place):
    ``sites`` from its metadata, ``encoders`` the loaded SAE of each site's layer."""
    from safetensors.torch import load_file

    from stsflow.io.files import check_safetensors

    check_safetensors(Path(directory) / WEIGHTS)
    t = load_file(str(Path(directory) / WEIGHTS))
    built = [Site(int(s["layer"]), s["sae"], s["sae_dir"], encoders[int(s["layer"])],
                  t[f"L{int(s['layer'])}.dims"].numpy()) for s in sites]
    attach(model, built)
    for layer, b in blocks(model).items():
        with torch.no_grad():
            b.W.copy_(t[f"L{layer}.W"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_sites(recipe, files, device) -> list[Site]:
    """A selective run's sites: for each layer of ``recipe.sae_select``, its SAE loaded from the
    run's inputs and the K dimensions chosen from the seed's predicted shift there
    (``choose_dims``). ``files``: stsflow.workflow.bundles.FinetuneFiles (``sites[layer]`` with
    ``sae`` and ``shift``)."""
    import logging

    from stsflow.io.files import read_table
    from stsflow.sae.prepare import load_sae

    log = logging.getLogger("stsflow")
    run, sel = recipe.run, recipe.sae_select
    sites = []
    for layer, sae in zip(sel["layers"], sel["saes"]):
        sae_dir = files.sites[int(layer)]["sae"]
        encoder, _ = load_sae(sae_dir, device=str(device))
        dims = choose_dims(read_table(files.sites[int(layer)]["shift"]), run.k, run.select,
                           recipe.seed, layer)
        sites.append(Site(int(layer), sae, str(sae_dir), encoder, dims))
        log.info(f"sae_select: layer {layer}, SAE {sae}, {run.select} {run.k} dimensions")
    return sites
