"""Sparse packing: which K indices each fold of filters streams, and how many array rows that takes.

This is what the sparse hardware does to a layer, whatever the loop order; the mapping
(`accel_sim.mapping`) then tiles the packed GEMM onto the array.

- **Block skipping**: a fold of filters (the C filters of a WS/OS column fold, or the filters of
  an IS stream tile) visits only the K-blocks that hold a non-zero for one of its filters (the
  union over its filters: the densest filter sets the length); kept K indices are packed densely.
- **N:M multiplexers**: the K indices are grouped by M; each touched group takes N packed
  positions (compressed weights, log2(M)-bit offsets, one M:1 mux per PE), so the packed length
  falls by M/N while the activations of every touched group still travel (M per N positions).

A layer's mask runs compressed only if it satisfies the hardware's N:M (at most N non-zeros in
every aligned group of M along K): 1:4 and 2:8 masks run as 2:4 on 2:4 hardware (no extra speed),
a 4:8 mask that breaks 2:4 runs uncompressed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from accel_sim.hardware import HardwareSpec
from accel_sim.sparsity import LayerSparsity
from accel_sim.workload import GemmLayer

BLOCK_INDEX_BYTES = 2
"""One 16-bit K-block index per kept block and filter fold (metadata)."""


@dataclass(frozen=True)
class Packing:
    """The packed K extent of every fold of filters.

    Attributes:
        rows: int64 ``[groups, filter folds]`` packed positions each fold of filters streams
            (array rows in WS/IS, time steps in OS; 0 = nothing to do).
        need_blocks: bool ``[groups, filter folds, ceil(K/B)]`` K-blocks each fold visits, or None
            (all of K).
        block: the block size B of ``need_blocks``, or None.
        k: the layer's K.
        nm: the hardware ``(N, M)`` the layer runs compressed with, or None.
        blocks: int64 ``[groups, filter folds]`` kept K-blocks (block index metadata), or None.
        width: filters per fold.
    """

    rows: np.ndarray
    need_blocks: np.ndarray | None
    block: int | None
    k: int
    nm: tuple[int, int] | None
    blocks: np.ndarray | None
    width: int

    @functools.cached_property
    def most_rows(self) -> int:
        """The most packed positions any fold of filters streams (0 when none)."""
        return int(self.rows.max(initial=0))

    def need(self, group: int, fold: int) -> np.ndarray:
        """bool ``[K]``: the K indices fold ``fold`` of ``group`` streams."""
        if self.need_blocks is None:
            return np.ones(self.k, bool)
        return np.repeat(self.need_blocks[group, fold], self.block)[: self.k]

    def demand(self, positions: np.ndarray | int) -> np.ndarray | int:
        """Activations that ``positions`` packed positions need: ``ceil(p/N)*M`` with N:M."""
        if self.nm is None:
            return positions
        return -(-positions // self.nm[0]) * self.nm[1]


def _block_need(sparsity: LayerSparsity, layer: GemmLayer, width: int) -> np.ndarray:
    """Per fold of ``width`` filters, the K-blocks holding a non-zero for any of its filters.

    Returns:
        bool ``[groups, ceil(N/width), ceil(K/B)]``.
    """
    b, g, n = sparsity.block, layer.groups, layer.N
    csum = sparsity.block_rows_before
    nf = math.ceil(n / width)
    lo = (np.arange(g)[:, None] * n + np.arange(nf)[None, :] * width)  # first filter row
    hi = lo + np.minimum(width, n - np.arange(nf) * width)[None, :]  # one past the last
    return (csum[(hi - 1) // b + 1] - csum[lo // b]) > 0


def _units(need_blocks: np.ndarray, b: int, k: int, unit: int) -> np.ndarray:
    """bool ``[groups, folds, ceil(K/unit)]``: units of ``unit`` K indices holding a streamed index.

    Works on atoms of ``gcd(B, unit)`` indices, which never straddle a block or a unit edge.
    """
    atom = math.gcd(b, unit)
    atoms = np.repeat(need_blocks, b // atom, axis=2)[:, :, : -(-k // atom)]
    per_unit = unit // atom
    if per_unit == 1:
        return atoms
    padded = np.pad(atoms, ((0, 0), (0, 0), (0, -atoms.shape[2] % per_unit)))
    return padded.reshape(*padded.shape[:2], -1, per_unit).any(axis=3)


def pack(layer: GemmLayer, sparsity: LayerSparsity, hw: HardwareSpec, width: int) -> Packing:
    """The packed K extent of each fold of ``width`` filters of ``layer`` on ``hw``.

    A masked layer's packing is remembered on its descriptor (`LayerSparsity.derived`)
    per shape, width and the hardware's sparse support: a sweep packs each mask once per width.
    The result is shared: do not modify its arrays.
    """
    masked = sparsity.mask is not None
    blocks = masked and hw.sparse.block_skipping and sparsity.block is not None
    nm = (hw.sparse.nm if masked and hw.sparse.nm is not None and sparsity.nm is not None
          and sparsity.satisfies_nm(*hw.sparse.nm) else None)
    if not blocks and nm is None:
        return _unpacked(layer.groups, layer.N, layer.K, width)
    return sparsity.derived(("packing", layer.groups, layer.N, layer.K, blocks, nm, width),
                            lambda: _pack(layer, sparsity, width, blocks, nm))


@functools.lru_cache(maxsize=4096)
def _unpacked(groups: int, n: int, k: int, width: int) -> Packing:
    """All of K for every fold of ``width`` filters (cached: a sweep asks per layer and point)."""
    return Packing(np.full((groups, math.ceil(n / width)), k, np.int64), None, None, k, None,
                   None, width)


def _pack(layer: GemmLayer, sparsity: LayerSparsity, width: int, blocks: bool,
          nm: tuple[int, int] | None) -> Packing:
    k = layer.K
    if blocks:
        b = sparsity.block
        need_blocks = _block_need(sparsity, layer, width)
        kept = need_blocks.sum(axis=2)
    else:
        b, kept = k, None
        need_blocks = np.ones((layer.groups, math.ceil(layer.N / width), 1), bool)
    if nm is None:
        lengths = np.minimum(b, k - np.arange(need_blocks.shape[2]) * b)  # partial last block
        rows = need_blocks @ lengths
    else:
        rows = _units(need_blocks, b, k, nm[1]).sum(axis=2) * nm[0]
    return Packing(rows.astype(np.int64), need_blocks if blocks else None,
                   b if blocks else None, k, nm, kept, width)


def first_need(packing: Packing, rows_per_fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activation words each (fold of filters, row fold) needs first, for a resident union.

    When the activations every fold of filters of a group needs stay resident (one copy of their
    union), each K unit (an index, or an M-group with N:M) is fetched by the first fold that
    streams it. The first fold depends on the loop order: filter folds outer (j-major) or row
    folds outer (i-major).

    Args:
        packing: a block-skipping packing (``need_blocks`` set).
        rows_per_fold: packed positions per row fold (the array's R).

    Returns:
        ``(new_j_major, new_i_major, union)``: int64 ``[groups, filter folds, row folds]`` words of
        K units first needed by that fold in each order, and int64 ``[groups]`` words of the
        union (each unit counted once); words are per stream step.
    """
    unit, unit_rows, words = ((packing.nm[1], packing.nm[0], packing.nm[1]) if packing.nm
                              else (1, 1, 1))
    need = _units(packing.need_blocks, packing.block, packing.k, unit)  # [G, F, U]
    nrf = max(1, -(-packing.most_rows // rows_per_fold))
    return _first_need(need, unit_rows, rows_per_fold, nrf, words)


@njit(cache=True)
def _first_need(need, unit_rows, rows_per_fold, nrf, words):  # pragma: no cover - compiled
    """`first_need` over bool ``need [G, F, U]`` (units each fold of filters streams): a
    unit's packed position in a fold is the count of its needed units before it, its row fold
    that position times ``unit_rows`` over ``rows_per_fold``."""
    g, f, u = need.shape
    new_j = np.zeros((g, f, nrf), np.int64)
    new_i = np.zeros((g, f, nrf), np.int64)
    union = np.zeros(g, np.int64)
    first = np.empty(u, np.int64)  # per unit: (row fold, fold) of its first fold, j-major
    best = np.empty(u, np.int64)  # per unit: the smallest row fold * F + fold, i-major
    for a in range(g):
        first[:] = -1
        best[:] = np.iinfo(np.int64).max
        for b in range(f):
            # the row fold of packed position pos, pos * unit_rows // rows_per_fold, counted up
            # as pos grows (no division per unit)
            pos_rows = fold = 0
            edge = rows_per_fold
            for x in range(u):
                if need[a, b, x]:
                    key = fold * f + b
                    if first[x] < 0:
                        first[x] = key
                    best[x] = min(best[x], key)
                    pos_rows += unit_rows
                    while pos_rows >= edge:
                        fold += 1
                        edge += rows_per_fold
        for x in range(u):
            if first[x] >= 0:
                new_j[a, first[x] % f, first[x] // f] += words
                new_i[a, best[x] % f, best[x] // f] += words
                union[a] += words
    return new_j, new_i, union
