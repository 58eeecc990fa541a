"""The torch-free core of the sparsity patterns: numpy arrays in, numpy arrays out.

`crisp.patterns` (the pruner's tensor API) and the simulator (`accel_sim.sparsity`,
`crisp.compressed_format`) share these, so an N:M group, a block and a tie mean the same
thing on both sides, and the simulator never imports torch. Conventions are those of
`crisp.patterns`: a layer is a ``[C_out, K]`` matrix, K in PyTorch's conv flatten order; N:M
groups are M consecutive entries along K (a short tail group keeps at most N); blocks are B x B
tiles, edge tiles partial; ties go to the lower index.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from crisp import ranges
from crisp.errors import UserError

DEFAULT_BLOCK = 16
"""The default block size B (``crisp prune --block``, ``accel-sim run/compare --block``,
``accel-sim sweep --blocks``, and every Python default of the pruner and the simulator).

Why 16: it is the smallest block the CRISP paper uses; it is a multiple of every supported M
(2..16), so N:M groups never straddle a block edge; it divides the channel counts of the small
networks the demo prunes (16, 32, 64, 128), so their block-rows are whole; and at a given
density finer blocks keep more accuracy than coarse ones. Larger arrays gain more from a B
matched to the array side (B >= rows, so a kept block fills a fold's rows): pass ``--block 32``
for a 32x32 array when speed matters more than accuracy.
"""


def check_nm(n: int, m: int) -> None:
    """Raise UserError unless ``1 <= n < m`` and ``m`` is a power of two no larger than 16."""
    if m not in (2, 4, 8, 16):
        raise UserError(f"N:M = {n}:{m}: M={m} must be a power of two in 2..16")
    if not 1 <= n < m:
        raise UserError(f"N:M = {n}:{m}: N={n} must satisfy 1 <= N < M={m}")


def check_block(b: int) -> None:
    """Raise UserError unless the block size is an integer in `crisp.ranges.BLOCK`."""
    if not isinstance(b, int):
        raise UserError(f"block size {b!r} is not an integer: allowed {ranges.BLOCK.allowed()}")
    ranges.BLOCK.check(b, "block size")


def nm_keep(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the N highest scores in every M consecutive entries of each row (numpy).

    Args:
        scores: ``[rows, K]`` float32 or float64 scores (higher = more important); NaN is never
            kept.
        n, m: the pattern, ``1 <= n < m``, m a power of two <= 16.

    Returns:
        bool ``[rows, K]``; each full group has exactly N True (fewer only where scores are not
        finite), a tail group at most N.
    """
    check_nm(n, m)
    if scores.ndim != 2:
        raise UserError(f"scores must be a [C_out, K] matrix, got shape {scores.shape}")
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    return _nm_keep(np.ascontiguousarray(scores), n, m)


@numba.njit(cache=True)
def _nm_keep(s: np.ndarray, n: int, m: int) -> np.ndarray:  # pragma: no cover - compiled
    """Keep weight i of a group iff fewer than N group members outrank it and its score is finite.

    j outranks i if ``s[j] > s[i]``, or ``s[j] == s[i]`` and ``j < i`` (a stable descending sort's
    order; for j before i that is ``s[j] >= s[i]``, false with a NaN as the definition is). Full
    groups of 4 (the common 2:4 and 1:4) count their ranks without branches, about 1.5 ns per
    weight; other groups compare every pair, O(M^2) per group.
    """
    rows, k = s.shape
    keep = np.zeros((rows, k), np.bool_)
    full = k - k % 4 if m == 4 else 0
    for r in range(rows):
        row = s[r]
        out = keep[r]
        for start in range(0, full, 4):
            a, b, c, d = row[start], row[start + 1], row[start + 2], row[start + 3]
            out[start] = ((b > a) + (c > a) + (d > a) < n) & np.isfinite(a)
            out[start + 1] = ((a >= b) + (c > b) + (d > b) < n) & np.isfinite(b)
            out[start + 2] = ((a >= c) + (b >= c) + (d > c) < n) & np.isfinite(c)
            out[start + 3] = ((a >= d) + (b >= d) + (c >= d) < n) & np.isfinite(d)
        for start in range(full, k, m):
            stop = min(start + m, k)
            for i in range(start, stop):
                rank = 0
                for j in range(start, stop):
                    if row[j] > row[i] or (row[j] == row[i] and j < i):
                        rank += 1
                out[i] = rank < n and np.isfinite(row[i])
    return keep


def top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """bool mask keeping the ``k`` largest entries of each row (ties: lower index first).

    The order of a stable descending sort, as ``torch.sort(..., stable=True)`` gives it.
    """
    order = np.argsort(-values, axis=-1, kind="stable")
    keep = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    return keep


def expand_blocks(bitmap: np.ndarray, b: int, shape: tuple[int, int]) -> np.ndarray:
    """Element mask of ``shape`` from a ``[ceil(C_out/B), ceil(K/B)]`` block bitmap."""
    full = np.repeat(np.repeat(np.asarray(bitmap, dtype=bool), b, axis=0), b, axis=1)
    return np.ascontiguousarray(full[: shape[0], : shape[1]])


def blocks_per_row(k: int, b: int, density: float) -> int:
    """Blocks per block-row that keep at least ``density`` of the ``ceil(K/B)`` block columns.

    At least one block; ``K`` is the matrix's column count.
    """
    if not 0 < density <= 1:
        raise UserError(f"density {density} must be in (0, 1]")
    cols = math.ceil(k / b)
    return max(1, min(cols, math.ceil(round(density * cols, 9))))
