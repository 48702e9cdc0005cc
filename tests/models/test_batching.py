"""Batches of similar lengths (models.batching.length_chunks): every index once, row and fill
limits, longest first."""

from __future__ import annotations

import numpy as np
import pytest

from stsflow.models.batching import MIN_FILL, length_chunks


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
