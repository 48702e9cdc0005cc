"""Logit lens of SAE features: the tokens a feature's decoder direction promotes and suppresses.

The direction is read the way the model reads its last residual stream: through the final norm,
then the unembedding (LM head). Applying the model's own norm module to the direction keeps each
architecture's convention (Llama and Qwen RMSNorm with a gain, Gemma's 1 + gain, GPT-2's
LayerNorm with its mean removal); the norm's per-vector scale is one positive number per
feature, so it changes no ranking, and a LayerNorm's bias is taken off again (the same vector
for every feature: it would rank every feature's tokens alike). Gemma 2's final logit
soft-capping is monotonic and left out: logits are reported before it.
"""

from __future__ import annotations

import numpy as np
import torch

from stsflow.models.tap import final_norm


@torch.no_grad()
def feature_logits(model, directions: torch.Tensor, vocab: int | None = None,
                   chunk: int = 32768) -> torch.Tensor:
    """(features × vocabulary) float32 logits of decoder ``directions`` (features × d): the LM
    head applied to the final norm of each direction, without the norm's bias (a LayerNorm's
    offset is one vector added to every direction: it says nothing of the feature and would
    shift every ranking alike) nor the head's. ``vocab``: the tokenizer's size (a head padded
    beyond it has rows that are no token). In vocabulary chunks: the head is cast to float32 one
    chunk at a time, never whole."""
    head = model.get_output_embeddings().weight  # vocab × d
    rows = min(vocab or head.shape[0], head.shape[0])
    import copy

    norm = copy.deepcopy(final_norm(model)).float()  # a few vectors: float32, even for bf16
    x = norm(directions.to(head.device, torch.float32))
    bias = getattr(norm, "bias", None)
    if isinstance(bias, torch.Tensor):
        x = x - bias
    return torch.cat([x @ head[i:min(i + chunk, rows)].float().T
                      for i in range(0, rows, chunk)], dim=1).cpu()


def top_tokens(logits: torch.Tensor, k: int, decode) -> tuple[list, list]:
    """(promotes, suppresses): per feature, the ``k`` highest and ``k`` lowest logits as
    [(token text, logit)]; ties go to the lower token id."""
    arr = logits.double().numpy()
    ids = np.arange(arr.shape[1])
    promotes, suppresses = [], []
    for row in arr:
        up = np.lexsort((ids, -row))[:k]
        down = np.lexsort((ids, row))[:k]
        promotes.append([(decode([int(i)]), float(row[i])) for i in up])
        suppresses.append([(decode([int(i)]), float(row[i])) for i in down])
    return promotes, suppresses
