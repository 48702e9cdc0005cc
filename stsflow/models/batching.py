"""The one batch-padding helper: a list of token sequences as padded ids and an attention mask
(left or right padding), and the pad id of a tokenizer."""

from __future__ import annotations

import torch


def pad_id_of(tokenizer) -> int:
    """Padding id: the tokenizer's pad token, else its EOS token, else 0."""
    for attr in ("pad_token_id", "eos_token_id"):
        val = getattr(tokenizer, attr, None)
        if isinstance(val, int):
            return val
    return 0


def pad_batch(seqs: list[list[int]], pad_id: int = 0, left: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` long tensors of sequences padded to the longest with ``pad_id``, on the
    right (teacher-forced passes) or the left (generation); mask 1 on real tokens. The one place
    a batch is padded."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, seq in enumerate(seqs):
        if not len(seq):
            continue
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[r, span] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[r, span] = 1
    return ids, mask
