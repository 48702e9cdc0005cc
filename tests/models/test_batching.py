"""Batches of similar lengths (models.batching.length_chunks, token_batches): every index once,
row, fill and token limits, longest first."""

from __future__ import annotations

import numpy as np
import pytest

from stsflow.models.batching import MIN_FILL, length_chunks, token_batches


def test_a_long_sequence_is_not_padded_together_with_short_ones():
    # a 60-token reference answer and five options of 5-7 tokens (an evaluation item)
    lengths = [6, 5, 60, 7, 6, 5]
    assert length_chunks(lengths, 10) == [[2], [3, 0, 4, 1, 5]]
    assert length_chunks(lengths, 2) == [[2], [3, 0], [4, 1], [5]]
    assert length_chunks([], 4) == []


@pytest.mark.parametrize("seed", range(5))
def test_every_index_once_within_the_limits(seed):
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 400, size=int(rng.integers(1, 60)))]
    chunks = length_chunks(lengths, 8)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    for c in chunks:
        width = max(lengths[i] for i in c)
        assert len(c) <= 8 and lengths[c[0]] == width
        assert sum(lengths[i] for i in c) >= MIN_FILL * len(c) * width
    # each batch opens with its longest sequence, the batches longest first
    firsts = [lengths[c[0]] for c in chunks]
    assert firsts == sorted(firsts, reverse=True)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("budget", [None, 1, 300, 1000])
def test_a_token_budget_bounds_every_batch(seed, budget):
    """rows x longest <= budget for every batch of more than one row (a row above the budget
    alone), both layouts; without a budget the extraction's layout is the longest-first order
    cut every max_rows, as it was before budgets existed."""
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 400, size=int(rng.integers(1, 60)))]
    longest_first = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for layout in (token_batches, length_chunks):
        batches = layout(lengths, 8, budget)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert [i for b in batches for i in b] == longest_first
        for b in batches:
            assert len(b) <= 8 and lengths[b[0]] == max(lengths[i] for i in b)
            if budget is not None and len(b) > 1:
                assert len(b) * lengths[b[0]] <= budget
        if budget is None and layout is token_batches:
            assert batches == [longest_first[k:k + 8] for k in range(0, len(lengths), 8)]


def test_a_budget_packs_short_rows_many_to_a_batch_and_long_rows_few():
    lengths = [400, 390, 380, 50, 40, 40, 30, 20]
    assert token_batches(lengths, 16, 800) == [[0, 1], [2, 3], [4, 5, 6, 7]]
    assert token_batches(lengths, 16) == [[0, 1, 2, 3, 4, 5, 6, 7]]
    assert token_batches(lengths, 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
