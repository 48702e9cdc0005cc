"""The one batch-padding helper: a list of token sequences as padded ids and an attention mask
(left or right padding), the pad id of a tokenizer, and batches of similar lengths."""

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


# a batch is closed before its padding would exceed a quarter of its tokens: a 60-token
# reference answer padded together with five 6-token options costs four times its tokens
MIN_FILL = 0.75


def _fits(rows: int, longest: int, max_tokens: int | None) -> bool:
    """A batch of ``rows`` padded to ``longest`` keeps within the token budget (none: always)."""
    return max_tokens is None or rows * longest <= max_tokens


def length_chunks(lengths: list[int], max_rows: int, max_tokens: int | None = None
                  ) -> list[list[int]]:
    """Indices of ``lengths`` in batches of at most ``max_rows``, longest first, each batch's
    real tokens at least ``MIN_FILL`` of its padded size (rows x its longest) and, with
    ``max_tokens``, that padded size at most ``max_tokens`` (a longer row alone: a batch of
    one)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        cur = chunks[-1] if chunks else None
        if (cur and len(cur) < max_rows
                and _fits(len(cur) + 1, lengths[cur[0]], max_tokens)
                and sum(lengths[j] for j in cur) + lengths[i]
                >= MIN_FILL * (len(cur) + 1) * lengths[cur[0]]):
            cur.append(i)
        else:
            chunks.append([i])
    return chunks


def token_batches(lengths: list[int], max_rows: int, max_tokens: int | None = None
                  ) -> list[list[int]]:
    """The extraction's layout: indices longest first, ``max_rows`` per batch and, with
    ``max_tokens``, a batch closed before its padded size (rows x its longest, the first row)
    would pass the budget, so short rows travel many to a batch and long ones few (a row longer
    than the budget alone). Without a budget: consecutive slices of ``max_rows``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        cur = batches[-1] if batches else None
        if cur and len(cur) < max_rows and _fits(len(cur) + 1, lengths[cur[0]], max_tokens):
            cur.append(i)
        else:
            batches.append([i])
    return batches
