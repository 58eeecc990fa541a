"""Contract and property tests of the sparsity patterns (crisp.patterns)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crisp import pattern_core
from crisp.errors import UserError
from crisp.patterns import (
    bitmap_of,
    block_bitmap,
    block_mask,
    block_scores,
    blocks_to_keep,
    check_block,
    check_nm,
    hybrid_mask,
    nm_mask,
    rank_scores,
)

NM = st.sampled_from([(n, m) for m in (2, 4, 8, 16) for n in range(1, m)])


def _scores(seed: int, rows: int, k: int) -> torch.Tensor:
    return torch.rand(rows, k, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 9), k=st.integers(1, 40), nm=NM)
def test_nm_mask_keeps_exactly_n_per_full_group_and_the_best(seed, rows, k, nm) -> None:
    n, m = nm
    s = _scores(seed, rows, k)
    mask = nm_mask(s, n, m)
    for g in range(math.ceil(k / m)):
        group, keep = s[:, g * m:(g + 1) * m], mask[:, g * m:(g + 1) * m]
        assert (keep.sum(dim=1) == min(n, group.shape[1])).all()
        # Every kept weight scores at least as high as every dropped one of its group.
        kept_min = torch.where(keep, group, torch.inf).min(dim=1).values
        dropped_max = torch.where(keep, -torch.inf, group).max(dim=1).values
        assert (kept_min >= dropped_max).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 40), k=st.integers(1, 40),
       b=st.integers(1, 12), data=st.data())
def test_block_mask_is_balanced_with_partial_edges(seed, rows, k, b, data) -> None:
    cols = math.ceil(k / b)
    keep = data.draw(st.integers(1, cols))
    s = _scores(seed, rows, k)
    bitmap = block_bitmap(s, b, keep)
    assert bitmap.shape == (math.ceil(rows / b), cols)
    assert (bitmap.sum(dim=1) == keep).all()  # every block-row keeps the same number
    mask = block_mask(s, b, keep)
    assert torch.equal(bitmap_of(mask, b), bitmap)
    # Each block-row keeps its top-`keep` blocks by summed score (the public code's defect).
    bs = block_scores(s, b)
    kept_min = torch.where(bitmap, bs, torch.inf).min(dim=1).values
    dropped_max = torch.where(bitmap, -torch.inf, bs).max(dim=1).values
    assert (kept_min >= dropped_max).all()


def test_block_rows_keep_their_own_top_blocks_on_a_known_matrix() -> None:
    # Two block-rows whose best blocks are in different columns: the public code's chunk-major /
    # row-major mix-up would give both rows the same columns.
    per_block = torch.tensor([[9.0, 1.0, 5.0], [1.0, 9.0, 5.0]])
    s = per_block.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert block_bitmap(s, 2, 2).tolist() == [[True, False, True], [False, True, True]]


def test_hybrid_is_nm_inside_kept_blocks() -> None:
    s = _scores(1, 32, 48)
    mask = hybrid_mask(s, 16, 2, 2, 4)
    blocks = block_mask(s, 16, 2)
    assert not (mask & ~blocks).any()
    inside = mask[blocks].reshape(-1, 4)
    assert (inside.sum(dim=1) == 2).all()
    assert int(mask.sum()) == 32 * 2 * 16 // 2


def test_allowed_blocks_only_shrink_and_rank_scores_are_non_increasing() -> None:
    s = _scores(2, 20, 50)
    first = block_bitmap(s, 8, 4)
    second = block_bitmap(torch.flip(s, dims=[1]), 8, 2, allowed=first)
    assert not (second & ~first).any()
    ranks = rank_scores(s, 8, allowed=first)
    finite = ranks[torch.isfinite(ranks)]
    assert len(finite) == 4 and (finite[:-1] >= finite[1:]).all()


@pytest.mark.parametrize(("n", "m"), [(2, 2), (4, 4), (0, 4), (1, 3), (1, 32), (5, 4)])
def test_bad_nm_raises(n: int, m: int) -> None:
    with pytest.raises(UserError, match="N:M"):
        check_nm(n, m)


@pytest.mark.parametrize("b", [0, -4, 2.5, True, "16"])
def test_bad_block_raises(b: object) -> None:
    with pytest.raises(UserError, match="block size"):
        check_block(b)


def test_bad_keep_and_density_raise() -> None:
    s = _scores(0, 4, 8)
    with pytest.raises(UserError, match="blocks kept"):
        block_bitmap(s, 4, 3)
    with pytest.raises(UserError, match="density"):
        blocks_to_keep(s, 4, 0.0)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 19), NM, st.sampled_from(["float32", "float64"]),
       st.integers(0, 2**32 - 1))
def test_nm_keep_follows_its_definition_with_ties_and_non_finite_scores(rows, k, nm, dtype,
                                                                        seed) -> None:
    """Weight i of a group is kept iff fewer than N members outrank it (a higher score, or an
    equal score earlier in the group) and its score is finite: the fast path for groups of 4
    and the general one against that sentence, on scores full of ties, NaN and infinities."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 3, (rows, k)).astype(dtype)
    for value in (np.nan, np.inf, -np.inf):
        s[rng.random(s.shape) < 0.1] = value
    n, m = nm
    want = np.zeros(s.shape, bool)
    for r in range(rows):
        for start in range(0, k, m):
            group = range(start, min(start + m, k))
            for i in group:
                rank = sum(s[r, j] > s[r, i] or (s[r, j] == s[r, i] and j < i) for j in group)
                want[r, i] = rank < n and np.isfinite(s[r, i])
    np.testing.assert_array_equal(pattern_core.nm_keep(s, n, m), want)
