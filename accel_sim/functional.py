"""Functional twin of the engine: compute a small layer's outputs by walking its fold plan.

It walks the very plan the engine costs (`accel_sim.mapper.map_layer`): its folds in their
order, each fold's group, column fold, row fold and stream tile, its rows, columns and stream
length. For every fold it packs the streamed K indices as the hardware does
(`accel_sim.packing`: N:M puts N rows per touched group of M, each PE holding one compressed
weight and its offset), takes the fold's slice of packed rows and of the streamed dimension, and
lets every PE's M:1 multiplexer pick the activation its offset names. Weights of skipped blocks
are never read (packed rows that belong to another filter's kept block are zero padding), and the
activations streamed are asserted to lie in the blocks the fold's filters keep, recomputed from
the mask. A plan with a missing or extra fold, a wrong row count or a wrong stream length gives
wrong outputs.
"""

from __future__ import annotations

import numpy as np

from accel_sim.hardware import HardwareSpec
from accel_sim.mapper import map_layer
from accel_sim.mapping import Mapping
from accel_sim.sparsity import LayerSparsity
from accel_sim.workload import GemmLayer


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


def functional(
    layer: GemmLayer,
    hw: HardwareSpec,
    sparsity: LayerSparsity,
    a: np.ndarray,
    w: np.ndarray,
    mapping: str | Mapping = "best",
) -> np.ndarray:
    """Outputs ``[groups, P, N]`` of ``layer`` computed through its fold plan on ``hw``.

    Args:
        layer: the layer (small: the twin is plain NumPy).
        hw: the array (any dataflow); its N:M and block-skipping support decide the packing.
        sparsity: the layer's descriptor (its mask selects the weights kept).
        a: activations ``[groups, P, K]``.
        w: weights ``[groups * N, K]`` (masked here by ``sparsity.mask``).
        mapping: the mapping to walk (``best``, ``scalesim`` or a Mapping).
    """
    plan, _ = map_layer(layer, hw, sparsity, mapping)
    g, p, n, k = layer.groups, layer.P, layer.N, layer.K
    mask = np.ones((g * n, k), bool) if sparsity.mask is None else sparsity.mask
    packing = plan.packing
    R, C, df = hw.array.rows, hw.array.cols, hw.array.dataflow
    kept_blocks = None
    if packing.need_blocks is not None:
        b = sparsity.block
        kept_blocks = np.repeat(np.repeat(sparsity.block_bitmap, b, axis=0), b, axis=1)[: g * n, :k]
    out = np.zeros((g, p, n), np.result_type(a, w))
    packed = {}
    dj, di, dt = {0: (0, 1, 0), 1: (1, 0, 0), 2: (0, 0, 1)}.get(plan.repeat_loop, (0, 0, 0))
    folds = [(gi, j + copy * dj, i + copy * di, tt + copy * dt, r, c, s)
             for (gi, j, i, tt), r, c, s, w in zip(plan.index, plan.rows, plan.cols, plan.stream,
                                                   plan.repeat, strict=True)
             for copy in range(w)]  # a repeated entry stands for iterations 1 .. w of its loop
    for gi, j, i, tt, r, c, s in folds:
        t0 = tt * plan.t_tile
        fold, lo = {"ws": (j, j * C), "os": (j, j * C), "is": (tt, t0)}[df]
        width = c if df != "is" else s
        filt = slice(gi * n + lo, gi * n + lo + width)
        if (gi, fold) not in packed:
            packed[gi, fold] = _pack(mask[filt], packing.need(gi, fold), packing.nm)
            assert packed[gi, fold].shape[0] == packing.rows[gi, fold], "packing disagrees"
        rows_k = packed[gi, fold]
        if df == "os":  # packed K positions stream in time; pixels are the array's rows
            ks, pix = rows_k[t0:t0 + s], slice(i * R, i * R + r)
        else:  # packed K positions are the array's rows
            ks = rows_k[i * R:i * R + r]
            pix = slice(t0, t0 + s) if df == "ws" else slice(j * C, j * C + c)
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
        # each PE's multiplexer selects activation ks[row, filter] from its M-group
        acts = a[gi][pix][:, safe]  # [pixels, packed rows, filters]
        out[gi, pix, lo:lo + width] += np.einsum("prc,rc->pc", acts, weight)
    return out
