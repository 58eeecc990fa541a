"""Functional twin of the WS engine: compute a small layer's outputs through its fold plan.

It follows :func:`accel_sim.mapping.column_rows` exactly: for each group and column fold it packs
the streamed K indices into array rows (N:M: N rows per touched group of M, each PE holding one
compressed weight and its offset), folds them R rows at a time, and lets every PE's M:1
multiplexer pick the activation its offset names. Weights of skipped blocks are never read (a
fold's rows that belong to another filter's kept block are zero padding), and the activations
streamed are asserted to lie in the blocks the fold's filters keep, recomputed from the mask.
"""

from __future__ import annotations

import math

import numpy as np

from accel_sim.hardware import HardwareSpec
from accel_sim.mapping import column_rows
from accel_sim.sparsity import LayerSparsity
from accel_sim.workload import GemmLayer
from crisp.errors import UserError


def _pack(mask: np.ndarray, need: np.ndarray, nm: tuple[int, int] | None) -> np.ndarray:
    """K index per (array row, filter) of one column fold; -1 = zero padding.

    Args:
        mask: bool ``[c, K]`` keep-mask of the fold's filters.
        need: bool ``[K]`` K indices the fold streams.
        nm: hardware ``(N, M)`` when compressed, else None (one row per streamed K index).
    """
    c, k = mask.shape
    if nm is None:
        ks = np.flatnonzero(need)
        return np.repeat(ks[:, None], c, axis=1)
    n, m = nm
    groups = np.flatnonzero(np.logical_or.reduceat(need, np.arange(0, k, m)))
    rows = np.full((groups.size * n, c), -1)
    for gi, q in enumerate(groups):
        for f in range(c):
            kept = np.flatnonzero(mask[f, q * m:(q + 1) * m] & need[q * m:(q + 1) * m])
            rows[gi * n:gi * n + kept.size, f] = q * m + kept  # offset = kept position
    return rows


def functional_ws(
    layer: GemmLayer,
    hw: HardwareSpec,
    sparsity: LayerSparsity,
    a: np.ndarray,
    w: np.ndarray,
) -> np.ndarray:
    """Outputs ``[groups, P, N]`` of ``layer`` computed through its WS fold plan.

    Args:
        layer: the layer (small: the twin is plain NumPy).
        hw: a ws array; its N:M and block-skipping support decide the packing.
        sparsity: the layer's descriptor (its mask selects the weights kept).
        a: activations ``[groups, P, K]``.
        w: weights ``[groups * N, K]`` (masked here by ``sparsity.mask``).

    Raises:
        UserError: a non-ws array.
    """
    if hw.array.dataflow != "ws":
        raise UserError(f"the functional twin models dataflow ws, not {hw.array.dataflow!r}")
    g, p, n, k = layer.groups, layer.P, layer.N, layer.K
    mask = np.ones((g * n, k), bool) if sparsity.mask is None else sparsity.mask
    cr = column_rows(layer, sparsity, hw)
    R, C = hw.array.rows, hw.array.cols
    kept_blocks = None
    if cr.need_blocks is not None:
        b = sparsity.block
        kept_blocks = np.repeat(np.repeat(sparsity.block_bitmap, b, axis=0), b, axis=1)[: g * n, :k]
    out = np.zeros((g, p, n), np.result_type(a, w))
    for gi in range(g):
        for j in range(math.ceil(n / C)):
            filt = slice(gi * n + j * C, gi * n + min((j + 1) * C, n))
            need = cr.need(gi, j)
            rows = _pack(mask[filt], need, cr.nm)
            assert rows.shape[0] == cr.rows[gi, j], "packing disagrees with the fold plan"
            for r0 in range(0, rows.shape[0], R):  # one fold: R array rows
                ks = rows[r0:r0 + R]
                valid = ks >= 0
                fi = np.broadcast_to(np.arange(filt.start, filt.stop), ks.shape)
                safe = np.maximum(ks, 0)
                loaded = valid & mask[fi, safe]  # weights read from the compressed store
                if kept_blocks is not None:
                    # rows of another filter's kept block are zero padding for this filter
                    loaded &= kept_blocks[fi, safe]
                    fold_blocks = kept_blocks[filt].any(axis=0)
                    assert fold_blocks[ks[valid]].all(), "streamed an activation of a skipped block"
                weight = np.where(loaded, w[fi, safe], 0)
                # each PE's multiplexer selects activation ks[row, col] from its M-group
                acts = a[gi][:, safe]  # [P, rows, cols]
                out[gi, :, j * C:j * C + ks.shape[1]] += np.einsum("prc,rc->pc", acts, weight)
    return out
