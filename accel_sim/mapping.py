"""Fold plans: how one layer (with its sparsity) tiles onto the array, as arrays over folds.

The mapper is the only place that knows about dataflows and sparse formats; the kernel in
:mod:`accel_sim.engine` walks any plan the same way.

**Fold shapes** (SCALE-Sim's): ``WS: Sr=K, Sc=N, T=P``; ``IS: Sr=K, Sc=P, T=N``;
``OS: Sr=P, Sc=N, T=K``. A fold occupies up to R of the Sr rows and C of the Sc columns and streams
T steps; it costs ``fill + T`` cycles with ``fill = 2R + C - 2`` (WS, IS: R cycles of stationary
load, then R + C - 2 of skew and drain) or ``R + C - 2`` (OS), always with the full R and C, as
SCALE-Sim counts. A grouped layer is ``groups`` GEMMs back to back.

**Loop order**: group, then column fold j (outer), then row fold i (inner). In WS/IS the row folds
of one column fold reduce into the same outputs, so partial sums stay in the ofmap SRAM.

**Operand roles** per dataflow (a tile depends on i, on j, or on both):

============  ===============  ===============  ==================
dataflow      ifmap            filter           ofmap
============  ===============  ===============  ==================
ws            rows (i)         stationary (i,j)  columns (j), summed
is            stationary (i,j) rows (i)          columns (j), summed
os            rows (i)         columns (j)       stationary (i,j)
============  ===============  ===============  ==================

**DRAM traffic and reuse** (SRAM capacity = half of each double-buffered SRAM; the ifmap moves as
the feature map, not as im2col, see :func:`ifmap_distinct_fraction`):
stationary tiles are fetched every fold (each is distinct); a rows tile is fetched every fold
unless the whole operand (``T * Sr`` words) fits, then only during the first column fold of each
group; a columns input tile is fetched once per column fold if it fits, else every fold.
A summed output tile (``T * c`` words) stays in the ofmap SRAM across row folds and is written
back after the last one; if it does not fit, partial sums spill: written after every row fold but
the last, read back before every row fold but the first. OS writes ``r * c`` outputs per fold.

**Sparse WS** (:func:`column_rows`): with block skipping, column fold j streams only the K indices
of blocks that hold a non-zero for any of its C filters (the union over its filters: the fold is
as long as its densest filter needs). With N:M multiplexers, the K indices are grouped by M and
each touched group takes N array rows (compressed weights, log2(M)-bit offsets); the input edge
then carries ``ceil(r / N) * M`` activations per cycle for a fold of r rows.
A layer's mask runs compressed only if it satisfies the hardware's N:M (at most N non-zeros in
every aligned group of M along K): 1:4 and 2:8 masks run as 2:4 on 2:4 hardware (no extra speed),
a 4:8 mask that breaks 2:4 runs uncompressed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from accel_sim.hardware import HardwareSpec
from accel_sim.sparsity import DENSE, LayerSparsity
from accel_sim.workload import GemmLayer
from crisp.errors import UserError

COUNT_NAMES = (
    "ifmap_sram_reads", "ifmap_sram_writes", "filter_sram_reads", "filter_sram_writes",
    "ofmap_sram_reads", "ofmap_sram_writes", "psum_reads", "metadata_sram_bytes",
    "dram_read_bytes", "dram_write_bytes", "dram_metadata_bytes", "mac_slots", "pe_reg_accesses",
)
"""Per-fold action counts (words unless the name says bytes); ``psum_reads`` is the part of
``ofmap_sram_reads`` that the array reads back to accumulate across row folds."""

_ROLES = {  # dataflow -> (ifmap role, filter role, ofmap role)
    "ws": ("rows", "stationary", "columns"),
    "is": ("stationary", "rows", "columns"),
    "os": ("rows", "columns", "stationary"),
}
_BLOCK_INDEX_BYTES = 2  # one 16-bit K-block index per kept block and column fold


def gemm_dims(layer: GemmLayer, dataflow: str) -> tuple[int, int, int]:
    """``(Sr, Sc, T)`` of one group's GEMM for ``dataflow`` (SCALE-Sim's fold shapes)."""
    return {"ws": (layer.K, layer.N, layer.P), "is": (layer.K, layer.P, layer.N),
            "os": (layer.P, layer.N, layer.K)}[dataflow]


def fill_cycles(hw: HardwareSpec) -> int:
    """Cycles of a fold besides its T streaming steps: ``2R + C - 2`` (WS, IS) or ``R + C - 2``."""
    r, c = hw.array.rows, hw.array.cols
    return (r if hw.array.dataflow != "os" else 0) + r + c - 2


@dataclass(frozen=True)
class ColumnRows:
    """Array rows each column fold needs.

    Attributes:
        rows: int64 ``[groups, column folds]`` array rows needed (0 = fold skipped).
        need_blocks: bool ``[groups, column folds, ceil(K/B)]`` K-blocks streamed per column fold
            (None = all of K).
        block: the block size B of ``need_blocks``, or None.
        k: the layer's K.
        nm: the hardware ``(N, M)`` the layer runs compressed with, or None.
        blocks: int64 ``[groups, column folds]`` kept K-blocks (block index metadata), or None.
    """

    rows: np.ndarray
    need_blocks: np.ndarray | None
    block: int | None
    k: int
    nm: tuple[int, int] | None
    blocks: np.ndarray | None

    def need(self, group: int, fold: int) -> np.ndarray:
        """bool ``[K]``: the K indices column fold ``fold`` of ``group`` streams."""
        if self.need_blocks is None:
            return np.ones(self.k, bool)
        return np.repeat(self.need_blocks[group, fold], self.block)[: self.k]


def _block_need(sparsity: LayerSparsity, layer: GemmLayer, cols: int) -> np.ndarray:
    """Per column fold, the K-blocks holding a non-zero for any of its filters.

    Returns:
        bool ``[groups, column folds, ceil(K/B)]``.
    """
    b, g, n = sparsity.block, layer.groups, layer.N
    bitmap = sparsity.block_bitmap
    csum = np.zeros((bitmap.shape[0] + 1, bitmap.shape[1]), np.int64)
    np.cumsum(bitmap, axis=0, out=csum[1:])
    ncf = math.ceil(n / cols)
    lo = (np.arange(g)[:, None] * n + np.arange(ncf)[None, :] * cols)  # first filter row
    hi = lo + np.minimum(cols, n - np.arange(ncf) * cols)[None, :]  # one past the last
    return (csum[(hi - 1) // b + 1] - csum[lo // b]) > 0


def _touched_groups(need_blocks: np.ndarray, b: int, k: int, m: int) -> np.ndarray:
    """Aligned M-groups along K that hold at least one streamed index, per column fold.

    Works on atoms of ``gcd(B, M)`` indices, which never straddle a block or a group edge.
    """
    atom = math.gcd(b, m)
    atoms = np.repeat(need_blocks, b // atom, axis=2)[:, :, : -(-k // atom)]
    per_group = m // atom
    padded = np.pad(atoms, ((0, 0), (0, 0), (0, -atoms.shape[2] % per_group)))
    grouped = padded.reshape(*padded.shape[:2], -1, per_group).any(axis=3)
    return grouped.sum(axis=2)


def column_rows(layer: GemmLayer, sparsity: LayerSparsity, hw: HardwareSpec) -> ColumnRows:
    """The rows each column fold of ``layer`` needs on ``hw`` (see the module docstring)."""
    sr, sc, _ = gemm_dims(layer, hw.array.dataflow)
    ncf = math.ceil(sc / hw.array.cols)
    mask, support = sparsity.mask, hw.sparse
    blocks = mask is not None and support.block_skipping and sparsity.block is not None
    nm = (support.nm if support.nm is not None and sparsity.nm is not None
          and sparsity.satisfies_nm(*support.nm) else None)
    if not blocks and nm is None:
        return ColumnRows(np.full((layer.groups, ncf), sr, np.int64), None, None, layer.K, None,
                          None)
    k = layer.K
    if blocks:
        b = sparsity.block
        need_blocks = _block_need(sparsity, layer, hw.array.cols)
        lengths = np.minimum(b, k - np.arange(need_blocks.shape[2]) * b)  # partial last block
        kept = need_blocks.sum(axis=2)
    else:
        b, need_blocks, kept = k, np.ones((layer.groups, ncf, 1), bool), None
        lengths = np.array([k])
    if nm is None:
        rows = need_blocks @ lengths
    else:
        rows = _touched_groups(need_blocks, b, k, nm[1]) * nm[0]
    return ColumnRows(rows.astype(np.int64), need_blocks if blocks else None,
                      b if blocks else None, k, nm, kept)


@dataclass(frozen=True)
class FoldPlan:
    """One layer's folds in execution order, as arrays the kernel walks.

    Attributes:
        fill: fixed cycles per fold besides streaming (see :func:`fill_cycles`).
        gemms: GEMMs (groups) with at least one fold; SCALE-Sim subtracts one cycle per GEMM.
        stream: int64 [F] streaming steps T per fold (cycles).
        edge_stall: int64 [F] cycles the input edge adds when the ifmap SRAM cannot deliver the
            activations a step needs.
        fetch_bytes: int64 [F] DRAM bytes (data and metadata) a fold needs before it starts.
        write_bytes: int64 [F] DRAM bytes a fold leaves to write back (outputs, spilled psums).
        counts: int64 [F, len(COUNT_NAMES)] per-fold action counts.
        effective_macs: MACs with a non-zero weight (the useful work).
        nm: the ``(N, M)`` the layer runs compressed with, or None.
    """

    fill: int
    gemms: int
    stream: np.ndarray
    edge_stall: np.ndarray
    fetch_bytes: np.ndarray
    write_bytes: np.ndarray
    counts: np.ndarray
    effective_macs: int
    nm: tuple[int, int] | None

    @property
    def folds(self) -> int:
        """Number of folds."""
        return len(self.stream)


def ifmap_distinct_fraction(layer: GemmLayer) -> float:
    """Distinct input words per im2col word of a conv layer (1 for linear layers), at most 1.

    The im2col matrix A repeats each input pixel for every kernel tap that covers it (about
    ``kh*kw / stride^2`` times); the ifmap SRAM holds the feature map itself and its address
    generator expands it, so DRAM and SRAM fills move ``fraction x`` the im2col words while the
    array still reads every im2col word from the SRAM. This assumes a fold's distinct inputs are
    in the same proportion as the layer's (exact for whole-channel folds, as in SCALE-Sim's
    buffers, which also fetch each address once).
    """
    if layer.kind == "linear" or len(layer.in_shape) != 4:
        return 1.0
    return min(1.0, math.prod(layer.in_shape) / (layer.P * layer.K * layer.groups))


def _check_capacity(layer: GemmLayer, hw: HardwareSpec, buffer: str, need_bytes: int) -> None:
    have = getattr(hw.memory, f"{buffer}_sram_kib") * 1024 / 2
    if need_bytes > have:
        raise UserError(
            f"layer {layer.name}: {buffer} SRAM half holds {have / 1024:g} KiB but one fold's "
            f"stationary tile needs {need_bytes / 1024:g} KiB: use a larger {buffer}_sram_kib"
        )


def plan_folds(
    layer: GemmLayer, hw: HardwareSpec, sparsity: LayerSparsity = DENSE
) -> FoldPlan:
    """The fold plan of ``layer`` with ``sparsity`` on ``hw`` (see the module docstring).

    Raises:
        UserError: a mask that does not fit the layer, or an SRAM half too small for one fold's
            stationary tile (names the layer, buffer, needed and available KiB).
    """
    sparsity.check(layer)
    R, C, df = hw.array.rows, hw.array.cols, hw.array.dataflow
    wb = hw.array.word_bytes
    sr, sc, t = gemm_dims(layer, df)
    cr = column_rows(layer, sparsity, hw)
    ncf = cr.rows.shape[1]
    rows = cr.rows.ravel()
    cols = np.tile(np.minimum(C, sc - np.arange(ncf) * C), layer.groups)
    nrf = -(-rows // R)
    cf = np.repeat(np.arange(rows.size), nrf)  # column fold (over all groups) of each fold
    i = np.arange(cf.size) - (np.cumsum(nrf) - nrf)[cf]
    last = i == nrf[cf] - 1
    r = np.minimum(R, rows[cf] - i * R)
    c = cols[cf]
    group = cf // ncf
    group_start = np.r_[True, group[1:] != group[:-1]] if cf.size else np.zeros(0, bool)
    in_first_cf = cf == cf[np.flatnonzero(group_start)][np.cumsum(group_start) - 1]
    demand = -(-r // cr.nm[0]) * cr.nm[1] if cr.nm else r

    half = {b: getattr(hw.memory, f"{b}_sram_kib") * 1024 / 2 for b in ("ifmap", "filter", "ofmap")}
    tile = {"stationary": r * c, "rows": t * demand, "columns": t * c}
    meta_bytes = np.zeros(cf.size, np.int64)
    if cr.nm:
        meta_bytes += -(-r * c * int(math.log2(cr.nm[1])) // 8)
    if cr.blocks is not None:
        meta_bytes += np.where(i == 0, cr.blocks.ravel()[cf] * _BLOCK_INDEX_BYTES, 0)

    fetch = {}
    distinct = {"ifmap": ifmap_distinct_fraction(layer), "filter": 1.0}
    roles = dict(zip(("ifmap", "filter", "ofmap"), _ROLES[df], strict=True))
    for buffer in ("ifmap", "filter"):
        role = roles[buffer]
        if role == "stationary":
            _check_capacity(layer, hw, buffer, int(tile[role].max(initial=0)) * wb
                            + int(meta_bytes.max(initial=0)))
            fetch[buffer] = np.ceil(tile[role] * distinct[buffer]).astype(np.int64)
        elif role == "rows":
            whole_fits = math.ceil(t * sr * distinct[buffer]) * wb <= half[buffer]
            words = np.ceil(tile[role] * distinct[buffer]).astype(np.int64)
            fetch[buffer] = np.where(whole_fits & ~in_first_cf, 0, words)
        else:
            fits = t * C * wb <= half[buffer]
            fetch[buffer] = np.where(fits & (i > 0), 0, tile[role])
    bitmap = (sparsity.scheme == "unstructured" and hw.sparse.bitmap_weights and df == "ws"
              and sparsity.mask is not None)
    if bitmap:  # non-zeros plus one bit per weight position
        fetch["filter"] = sparsity.tile_nonzeros(layer.groups, R, C).ravel()
        meta_bytes += -(-r * c // 8)

    psum_reads = np.zeros(cf.size, np.int64)
    spill_reads = np.zeros(cf.size, np.int64)
    if roles["ofmap"] == "columns":
        out_writes = t * c
        psum_reads = np.where(i > 0, t * c, 0)
        fits = t * C * wb <= half["ofmap"]
        write_words = np.where(last | (not fits), t * c, 0)
        spill_reads = np.where(fits, 0, psum_reads)
    else:
        _check_capacity(layer, hw, "ofmap", R * C * wb)
        out_writes = write_words = r * c
    slots = r * c * t

    counts = np.stack([
        tile[roles["ifmap"]],
        fetch["ifmap"],
        tile[roles["filter"]],
        fetch["filter"],
        psum_reads + write_words,
        out_writes + spill_reads,
        psum_reads,
        2 * meta_bytes,
        (fetch["ifmap"] + fetch["filter"] + spill_reads) * wb + meta_bytes,
        write_words * wb,
        meta_bytes,
        slots,
        2 * slots + r * c,
    ], axis=1).astype(np.int64)
    edge_bw = hw.edge_words_per_cycle
    edge_stall = (np.maximum(0, -(-t * demand // edge_bw) - t) if df != "is"
                  else np.zeros(cf.size, np.int64))
    return FoldPlan(
        fill=fill_cycles(hw),
        gemms=int(np.unique(group).size),
        stream=np.full(cf.size, t, np.int64),
        edge_stall=np.asarray(edge_stall, np.int64),
        fetch_bytes=counts[:, COUNT_NAMES.index("dram_read_bytes")].copy(),
        write_bytes=counts[:, COUNT_NAMES.index("dram_write_bytes")].copy(),
        counts=counts,
        effective_macs=layer.P * sparsity.nonzeros(layer),
        nm=cr.nm,
    )
