"""Mappings and fold plans: how one layer (with its sparsity) is tiled and ordered on the array.

A `Mapping` is the schedule of one layer: the loop order of its three fold loops and the
tile of the streamed dimension. `plan_folds` turns (layer, sparsity, hardware, mapping)
into a `FoldPlan`, arrays over folds that the kernel in `accel_sim.engine` walks.
`accel_sim.mapper` searches mappings; nothing else knows about loop orders.

**Fold shapes** (SCALE-Sim's): ``WS: Sr=K, Sc=N, T=P``; ``IS: Sr=K, Sc=P, T=N``;
``OS: Sr=P, Sc=N, T=K``. The K extent is the *packed* one (`accel_sim.packing`): block
skipping and N:M shorten it per fold of filters (WS, OS: a column fold's C filters; IS: the
filters of a stream tile). Three fold loops tile the GEMM: ``i`` over row folds (R rows), ``j``
over column folds (C columns) and ``t`` over tiles of the streamed dimension (``t_tile`` steps;
untiled = one tile). A grouped layer runs its groups one after another (outermost). A
mapping may also cut j into blocks (`Mapping.j_block`): a fourth loop between the groups and
the nest, the nest running on one block's column folds at a time (j local to the block in every
rule below).

**Cycles**: a fold streams ``s`` steps. It costs ``fill + s`` cycles with ``fill = 2R + C - 2``
(WS, IS: R cycles of stationary load, then skew and drain) or ``R + C - 2`` (OS), always with
the full R and C, as SCALE-Sim counts; a fold that keeps the previous fold's stationary tile
(the next stream tile of the same tile) continues the stream and costs only ``s``.

With ``weight_buffers = 2`` (WS, IS) each PE has two stationary registers: the next tile
shifts in through the columns' load chains (R cycles, as a single register loads) while the
current tile's folds stream, and the array streams on without draining, paying its skew and
drain once, in the first fold's ``fill = 2R + C - 2``. A later fold that loads a new tile
exposes only ``fill = max(0, R - u)``, where ``u`` counts the streaming steps and edge stalls
of the previous tile's folds: the load of tile k starts once tile k-2, the last
user of its register, has sent its last step into the array and the previous load is done,
which is when tile k-1 starts streaming. An IS tile whose N:M-expanded activations have ``e``
rows more than R loads in ``R + e`` cycles; the part of ``e`` left exposed counts as edge
stall. `accel_sim.reference` checks this cycle by cycle.

**Operand tiles** (words) of a fold with ``r`` rows, ``c`` columns, ``s`` steps, and ``d(x) =
ceil(x/N)*M`` activations for ``x`` N:M-packed positions (``d(x) = x`` without N:M):

========  =====================  =====================  ==================  ==========
dataflow  ifmap (A)              filter (W)             ofmap (O)           reduction
========  =====================  =====================  ==================  ==========
ws        ``s x d(r)``, (i, t)   ``r x c`` stat. (i, j)  ``s x c``, (j, t)   over i
is        ``d(r) x c`` stat.     ``s x r``, (i, t)       ``s x c``, (j, t)   over i
os        ``r x d(s)``, (i, t)   ``c x s``, (j, t)       ``r x c`` stat.     over t
========  =====================  =====================  ==================  ==========

(with block skipping the packed K indices differ per fold of filters, so the WS/OS ifmap tile
depends on j and the IS stationary tile on t as well).

**Reuse** (one rule for every operand): each SRAM half holds a *window*, the innermost loops
whose tiles of that operand fit together (footprint = tile x trips of the window's loops the
operand depends on). A tile is fetched from DRAM on its first visit within a window instance,
i.e. when every loop of the window that the operand does not depend on is at index 0; loops
outside the window that it does not depend on fetch it again. A tile larger than its SRAM half
streams through it (fetched every fold). A window spanning the whole nest of a single-group,
unblocked layer may fill the whole SRAM (loaded once, never replaced), and so may a layer's only
stationary tile. With block skipping, the WS ifmap of all column folds
of a group may stay resident as one copy of their union (`accel_sim.packing.first_need`):
each K unit is then fetched once, by the fold that first streams it.
The ifmap moves as the feature map, not as im2col: DRAM fills move ``fraction x`` the im2col
words (`ifmap_distinct_fraction`) while the array reads every im2col word from the SRAM.

**Partial sums** are ``psum_bits`` wide. If the output window spans the reduction loop, partial
sums stay in the ofmap SRAM; otherwise they spill to DRAM (written after every reduction step
but the last, read back before every one but the first), at ``psum_bits``. Final outputs leave
at the operand width. SRAM traffic of partial sums is counted apart (``psum_*``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from accel_sim import timeline
from accel_sim.hardware import HardwareSpec
from accel_sim.packing import BLOCK_INDEX_BYTES, Packing, first_need, pack
from accel_sim.sparsity import DENSE, LayerSparsity
from accel_sim.workload import GemmLayer
from crisp.errors import UserError

COUNT_NAMES = (
    "ifmap_sram_reads", "ifmap_sram_writes", "filter_sram_reads", "filter_sram_writes",
    "ofmap_sram_reads", "ofmap_sram_writes", "psum_sram_reads", "psum_sram_writes",
    "metadata_sram_bytes", "dram_read_bytes", "dram_write_bytes", "dram_metadata_bytes",
    "dram_psum_bytes", "mac_slots", "pe_reg_accesses",
)
"""Per-fold action counts: words at the operand width (``psum_*``: partial-sum words at
``psum_bits``; ``*_bytes``: bytes). ``ofmap_sram_*`` are final outputs; ``dram_read_bytes`` and
``dram_write_bytes`` include metadata and spilled partial sums."""

LOOPS = "ijt"
"""Fold loops: ``i`` row folds, ``j`` column folds, ``t`` tiles of the streamed dimension."""
_DATAFLOW_CODE = {"ws": 0, "is": 1, "os": 2}
_I, _J, _T = 1, 2, 4  # loop bits


@dataclass(frozen=True)
class Mapping:
    """The schedule of one layer on the array.

    Attributes:
        order: the fold loops outer to inner, a permutation of ``"ijt"`` (``"jit"``: column
            folds outer, then row folds, then stream tiles; groups are always outermost).
        t_tile: steps of the streamed dimension per fold, or None = untiled (the whole T).
        j_block: column folds per block, or None = unblocked. A block is a fourth fold loop,
            outside ``order`` and inside the groups: the nest runs on the first ``j_block``
            column folds, then on the next, so the ofmap (partial sums) and the operands that
            depend on j need room for one block's columns only; operands that do not depend
            on j are fetched again for every block.
    """

    order: str = "jit"
    t_tile: int | None = None
    j_block: int | None = None

    def __post_init__(self) -> None:
        if sorted(self.order) != sorted(LOOPS):
            raise UserError(f"loop order {self.order!r}: allowed a permutation of 'ijt'")
        if self.t_tile is not None and self.t_tile < 1:
            raise UserError(f"stream tile {self.t_tile} must be >= 1")
        if self.j_block is not None and self.j_block < 1:
            raise UserError(f"column-fold block {self.j_block} must be >= 1")

    def __str__(self) -> str:
        blocks = "" if self.j_block is None else f"J/{self.j_block}>"
        return f"{blocks}{'>'.join(self.order)} T/{'all' if self.t_tile is None else self.t_tile}"


SCALESIM = Mapping("jit", None)
"""SCALE-Sim's fixed schedule: column folds outer, row folds inner, every fold streams all of T."""


def fill_cycles(hw: HardwareSpec) -> int:
    """Cycles of a fold besides its streaming steps: ``2R + C - 2`` (WS, IS) or ``R + C - 2``."""
    r, c = hw.array.rows, hw.array.cols
    return (r if hw.array.dataflow != "os" else 0) + r + c - 2


def ifmap_distinct_fraction(layer: GemmLayer) -> float:
    """Distinct input words per im2col word of a conv layer (1 for linear and matmul layers),
    at most 1.

    The im2col matrix A repeats each input pixel for every kernel tap that covers it (about
    ``kh*kw / stride^2`` times); the ifmap SRAM holds the feature map itself and its address
    generator expands it, so DRAM and SRAM fills move ``fraction x`` the im2col words while the
    array still reads every im2col word from the SRAM. This assumes a fold's distinct inputs are
    in the same proportion as the layer's (exact for whole-channel folds, as in SCALE-Sim's
    buffers, which also fetch each address once).
    """
    if layer.kind in ("linear", "matmul") or len(layer.in_shape) != 4:
        return 1.0
    return min(1.0, math.prod(layer.in_shape) / (layer.P * layer.K * layer.groups))


@dataclass(frozen=True)
class FoldPlan:
    """One layer's folds in execution order, as arrays the kernel walks.

    Attributes:
        mapping: the schedule the plan follows.
        gemms: GEMMs (groups) with at least one fold; SCALE-Sim subtracts one cycle per GEMM.
        fill: int64 [F] fixed cycles of each fold besides streaming (0 when it continues the
            previous fold's stream).
        stream: int64 [F] streaming steps per fold (cycles).
        edge_stall: int64 [F] cycles the input edge adds when the ifmap SRAM cannot deliver the
            activations a step needs.
        fetch_bytes: int64 [F] DRAM bytes (data, metadata, spilled psums) a fold needs before
            it starts.
        write_bytes: int64 [F] DRAM bytes a fold leaves to write back (outputs, spilled psums).
        repeat: int64 [F] how many alike folds each entry stands for: a maximal run of entries
            with ``repeat > 1`` is one block of iterations ``1 .. repeat`` of one fold loop (the
            entry shows iteration 1), repeated in place.
        repeat_loop: that fold loop (0 = i, 1 = j, 2 = t), or -1 when nothing repeats.
        counts: int64 [len(COUNT_NAMES)] action counts summed over the folds.
        index: int64 [F, 4] each fold's (group, column fold j, row fold i, stream tile).
        rows, cols: int64 [F] array rows and columns each fold occupies.
        t_tile: steps per stream tile (fold ``(.., tt)`` streams from ``tt * t_tile``).
        effective_macs: MACs with a non-zero weight (the useful work).
        nm: the ``(N, M)`` the layer runs compressed with, or None.
        packing: the sparse packing the folds follow.
    """

    mapping: Mapping
    gemms: int
    fill: np.ndarray
    stream: np.ndarray
    edge_stall: np.ndarray
    fetch_bytes: np.ndarray
    write_bytes: np.ndarray
    repeat: np.ndarray
    repeat_loop: int
    counts: np.ndarray
    index: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    t_tile: int
    effective_macs: int
    nm: tuple[int, int] | None
    packing: Packing

    @property
    def folds(self) -> int:
        """Number of folds (repeated ones counted each time)."""
        return int(self.repeat.sum())


@dataclass(frozen=True)
class LayerGeometry:
    """What every mapping of one (layer, sparsity, hardware) shares: shapes, packing, masks.

    Built once by `geometry`; `plan_folds` and the mapper reuse it for every
    candidate mapping (``tilings`` remembers each stream tile's `stream_tiling`, the
    extents of each filter-fold width and the bitmap's non-zeros per weight tile).
    """

    layer: GemmLayer
    sparsity: LayerSparsity
    hw: HardwareSpec
    dataflow: str
    stream_full: int
    packing: Packing
    union: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    distinct: float
    bitmap: bool
    tilings: dict = field(default_factory=dict, compare=False, repr=False)


def geometry(layer: GemmLayer, hw: HardwareSpec, sparsity: LayerSparsity = DENSE
             ) -> LayerGeometry:
    """The mapping-independent part of a layer on ``hw`` (see `LayerGeometry`).

    Raises:
        UserError: a mask that does not fit the layer.
    """
    sparsity.check(layer)
    df = hw.array.dataflow
    packing = pack(layer, sparsity, hw, hw.array.cols)  # WS/OS: a column fold's filters
    union = None
    if df == "ws" and packing.need_blocks is not None:
        union = first_need(packing, hw.array.rows)
    stream_full = {"ws": layer.P, "is": layer.N, "os": packing.most_rows}[df]
    bitmap = (sparsity.scheme == "unstructured" and hw.sparse.bitmap_weights
              and sparsity.mask is not None)
    return LayerGeometry(layer, sparsity, hw, df, max(1, stream_full), packing, union,
                         ifmap_distinct_fraction(layer), bitmap)


@dataclass(frozen=True)
class _Extents:
    """Packed rows per (group, j, tile), steps per (group, j), columns, and what the tiling and
    the compression need of them (maxima, alike loops). The same for every stream tile of a WS
    or OS layer; an IS layer has one per width of its stream tile's filter fold."""

    rext: np.ndarray  # int64 [G, NJ or 1, NT or 1]
    text: np.ndarray  # int64 [G, NJ]
    cext: np.ndarray  # int64 [NJ]
    kblocks: np.ndarray  # int64 [G, NJ or 1, NT or 1] kept blocks (block-index metadata)
    packing: Packing
    row_max: int  # the most packed rows of any fold of filters (at least 1)
    col_max: int  # the most columns of any column fold (the first's)
    step_max: int  # the most steps of any column fold (at least 1)
    alike: np.ndarray  # bool [3]: see _extent_arrays


def _extents(geo: LayerGeometry, t_len: int) -> _Extents:
    """The extents of ``geo`` at stream tile ``t_len``, remembered in ``geo.tilings`` and, for a
    masked layer, on its descriptor (shared by every array with the same columns, dataflow and
    sparse support: a sweep builds them once per mask and worker process for those; they do
    not travel with a copy of the descriptor)."""
    width = min(t_len, geo.layer.N) if geo.dataflow == "is" else None
    key = ("extents", width)
    if key not in geo.tilings:
        layer, hw = geo.layer, geo.hw
        if geo.sparsity.mask is None:
            geo.tilings[key] = _new_extents(geo, width)
        else:
            shared = ("extents", geo.dataflow, width, hw.array.cols, hw.sparse, layer.P, layer.N,
                      layer.K, layer.groups)
            geo.tilings[key] = geo.sparsity.derived(shared, lambda: _new_extents(geo, width))
    return geo.tilings[key]


def _new_extents(geo: LayerGeometry, width: int | None) -> _Extents:
    layer, hw = geo.layer, geo.hw
    packing = geo.packing if geo.dataflow != "is" else pack(layer, geo.sparsity, hw, width)
    has_blocks = packing.blocks is not None
    rext, text, cext, kblocks, row_max, step_max, alike = _extent_arrays(
        packing.rows, packing.blocks if has_blocks else packing.rows, has_blocks,
        _DATAFLOW_CODE[geo.dataflow], layer.P, layer.N, hw.array.cols, geo.union is not None,
        geo.bitmap)
    return _Extents(rext, text, cext, kblocks, packing, row_max, int(cext[0]), step_max, alike)


@njit(cache=True)
def _extent_arrays(rows, blocks, has_blocks, df, P, N, C, union, bitmap):  # pragma: no cover
    """The arrays of `_Extents` from a packing's ``rows`` (and kept ``blocks`` per fold of
    filters), with the maxima and the alike loops.

    WS: packed rows per (group, column fold), P steps; OS: P rows, packed steps per column
    fold; IS (``rows`` per stream tile's fold of filters): packed rows per (group, tile), N steps
    per column fold of pixels. Alike loops (bool [3], for i, j, t: whether every middle
    iteration is the same work): row folds when one packed row count holds everywhere, with no
    first-need union and no bitmap count per row fold; column folds when, within each group,
    stream length, row count and block count are the same for every column fold (an IS layer's
    per-tile row counts do not depend on the column fold), with no union and no bitmap count
    per column fold; stream tiles when one stream length holds for every column fold and no
    packing, block index or bitmap count depends on the tile.
    """
    g, nf = rows.shape
    if df == 0:  # ws
        rext = rows.copy().reshape(g, nf, 1)
        text = np.full((g, nf), P, np.int64)
        cols = N
    elif df == 2:  # os
        rext = np.full((g, nf, 1), P, np.int64)
        text = rows.copy()
        cols = N
    else:  # is
        rext = rows.copy().reshape(g, 1, nf)
        text = np.full((g, -(-P // C)), N, np.int64)
        cols = P
    cext = np.empty(-(-cols // C), np.int64)
    for j in range(cext.shape[0]):
        cext[j] = min(C, cols - j * C)
    kblocks = blocks.copy().reshape(rext.shape) if has_blocks else np.zeros_like(rext)
    row_max = max(1, rext.max())
    step_max = max(1, text.max())
    alike = np.zeros(3, np.bool_)
    alike[0] = (rext == rext.ravel()[0]).all() and not union and not (bitmap and df != 2)
    alike[1] = not union and not (bitmap and df != 1)
    for a in range(g):
        for j in range(1, text.shape[1]):
            alike[1] &= text[a, j] == text[a, 0]
        for j in range(1, rext.shape[1]):
            for t in range(rext.shape[2]):
                alike[1] &= rext[a, j, t] == rext[a, 0, t] and kblocks[a, j, t] == kblocks[a, 0, t]
    alike[2] = ((text == text.ravel()[0]).all() and rext.shape[2] == 1
                and not (bitmap and df != 0))
    return rext, text, cext, kblocks, row_max, step_max, alike


def _relevance(geo: LayerGeometry) -> tuple[int, int, int, int, int]:
    """Loop bits each operand depends on: (ifmap, filter, ofmap, stationary, reduction)."""
    blocks = geo.packing.need_blocks is not None
    if geo.dataflow == "ws":
        return _I | _T | (_J if blocks else 0), _I | _J, _J | _T, _I | _J, _I
    if geo.dataflow == "is":
        a = _I | _J | (_T if blocks else 0)
        return a, _I | _T, _J | _T, a, _I
    return _I | _T | (_J if blocks else 0), _J | _T, _I | _J, _I | _J, _T


@dataclass(frozen=True)
class StreamTiling:
    """Everything `fold_arrays` needs for one stream tile, whatever the loop order.

    Built once per (layer geometry, stream tile) by `stream_tiling`; the mapper costs every
    loop order of a stream tile from one of these in a single kernel call.
    """

    t_len: int
    ext: _Extents
    kernel_args: tuple


def stream_tiling(geo: LayerGeometry, t_tile: int | None, compress: bool = True,
                  j_block: int | None = None) -> StreamTiling:
    """The order-independent kernel arguments of ``geo`` at stream tile ``t_tile`` and
    column-fold block ``j_block`` (`Mapping`).

    ``compress`` lets the plan walk the alike middle iterations of one loop once
    (``FoldPlan.repeat``); the result is identical either way (a test checks it).

    Raises:
        UserError: an SRAM half too small for one fold's stationary tile (names the layer,
            buffer, needed and available KiB).
    """
    key = (t_tile, compress, j_block)
    if key not in geo.tilings:
        geo.tilings[key] = _stream_tiling(geo, t_tile, compress, j_block)
    return geo.tilings[key]


def _stream_tiling(geo: LayerGeometry, t_tile: int | None, compress: bool,
                   j_block: int | None) -> StreamTiling:
    layer, hw, df = geo.layer, geo.hw, geo.dataflow
    R, memory = hw.array.rows, hw.memory
    wb, pb = hw.array.word_bytes, hw.array.psum_bits // 8
    t_len = min(t_tile or geo.stream_full, geo.stream_full)
    ext = _extents(geo, t_len)
    nm = ext.packing.nm
    n, m = nm or (1, 1)
    meta_bits = int(math.log2(m)) if nm else 0
    rmax = min(R, ext.row_max)
    cmax = ext.col_max
    demand = ext.packing.demand
    w_scale = wb + meta_bits / 8
    folds_j = len(ext.cext)
    jb = min(j_block or folds_j, folds_j)
    trips = np.array([-(-ext.row_max // R), jb, -(-ext.step_max // t_len)], np.int64)
    rel = _relevance(geo)
    alike = ext.alike if compress else _NO_ALIKE
    if folds_j % jb:  # a last block with fewer column folds: its middle iterations differ
        alike = alike & np.array([True, False, True])
    # largest tiles in bytes; the stationary one must fit its SRAM half, or the whole SRAM when
    # it is the layer's only stationary tile (nothing to load after it)
    every = (trips[0], folds_j, trips[2])  # the layer's trips, all its blocks together
    whole = 2 if layer.groups == 1 and all(
        every[q] == 1 for q in range(3) if rel[3] & (1 << q)) else 1
    if df == "ws":
        a_tile, w_tile, o_tile = (t_len * demand(rmax) * wb * geo.distinct, rmax * cmax * w_scale,
                                  t_len * cmax * pb)
        _check_capacity(layer, "filter", w_tile, memory.filter_sram_kib * 1024 / 2, whole)
    elif df == "is":
        a_tile, w_tile, o_tile = (demand(rmax) * cmax * wb * geo.distinct, t_len * rmax * w_scale,
                                  t_len * cmax * pb)
        _check_capacity(layer, "ifmap", a_tile / geo.distinct, memory.ifmap_sram_kib * 1024 / 2,
                        whole)
    else:
        a_tile, w_tile, o_tile = (rmax * demand(t_len) * wb * geo.distinct, cmax * t_len * w_scale,
                                  rmax * cmax * pb)
        _check_capacity(layer, "ofmap", o_tile, memory.ofmap_sram_kib * 1024 / 2, whole)
    union_bytes, new_j, new_i = -1.0, _NONE, _NONE
    if geo.union is not None and jb == folds_j:  # (blocks: each fetches its own tiles)
        new_j, new_i, union = geo.union
        union_bytes = float(union.max(initial=0)) * t_len * wb * geo.distinct
    nzt = _NONE
    if geo.bitmap:
        tile_k, tile_n = {"ws": (R, hw.array.cols), "is": (R, t_len),
                          "os": (t_len, hw.array.cols)}[df]
        if ("nonzeros", tile_k, tile_n) not in geo.tilings:  # WS: one tile for every t_tile
            geo.tilings["nonzeros", tile_k, tile_n] = geo.sparsity.tile_nonzeros(
                layer.groups, tile_k, tile_n)
        nzt = geo.tilings["nonzeros", tile_k, tile_n]
    args = (
        _DATAFLOW_CODE[df], R, t_len, ext.rext, ext.text, ext.cext, n, m, meta_bits,
        ext.kblocks, BLOCK_INDEX_BYTES, *rel, trips, jb,
        np.array([a_tile, w_tile, o_tile, memory.ifmap_sram_kib * 1024 / 2,
                  memory.filter_sram_kib * 1024 / 2, memory.ofmap_sram_kib * 1024 / 2]),
        union_bytes, new_j, new_i, geo.distinct, geo.bitmap, nzt, wb, pb,
        hw.edge_words_per_cycle, fill_cycles(hw),
        hw.array.weight_buffers if df != "os" else 1, alike,
    )
    return StreamTiling(t_len, ext, args)


# The kernel's unused array arguments, shared by every tiling (the kernel never writes them).
_NONE = np.zeros((1, 1, 1), np.int64)
_NO_ALIKE = np.zeros(3, np.bool_)


def order_code(order: str) -> np.ndarray:
    """int64 [3]: the loop order as loop indices (0 = i, 1 = j, 2 = t), outer to inner."""
    return np.array([LOOPS.index(c) for c in order], np.int64)


def plan_folds(
    layer: GemmLayer, hw: HardwareSpec, sparsity: LayerSparsity = DENSE,
    mapping: Mapping = SCALESIM, geo: LayerGeometry | None = None, compress: bool = True,
) -> FoldPlan:
    """The fold plan of ``layer`` with ``sparsity`` on ``hw`` under ``mapping`` (module docstring).

    Args:
        geo: the layer's `geometry`, when the caller already has it (the mapper).

    Raises:
        UserError: a mask that does not fit the layer, or an SRAM half too small for one fold's
            stationary tile (names the layer, buffer, needed and available KiB).
    """
    geo = geo or geometry(layer, hw, sparsity)
    tiling = stream_tiling(geo, mapping.t_tile, compress, mapping.j_block)
    fill, stream, edge, fetch, write, repeat, comp, index, rows, cols, totals, walked = \
        fold_arrays(order_code(mapping.order), *tiling.kernel_args, True,
                    float(hw.memory.dram_bytes_per_cycle))
    return FoldPlan(
        mapping=mapping, gemms=int(walked[6]), fill=fill, stream=stream,
        edge_stall=edge, fetch_bytes=fetch, write_bytes=write, repeat=repeat,
        repeat_loop=int(comp), counts=totals, index=index,
        rows=rows, cols=cols, t_tile=tiling.t_len,
        effective_macs=layer.P * sparsity.nonzeros(layer), nm=tiling.ext.packing.nm,
        packing=tiling.ext.packing,
    )


def _check_capacity(layer: GemmLayer, buffer: str, need_bytes: float, half: float,
                    halves: int) -> None:
    """Raise unless the stationary tile fits ``halves`` (1, or 2 for a layer's only stationary
    tile) SRAM halves of ``half`` bytes."""
    if need_bytes > half * halves:
        room = "SRAM" if halves == 2 else "SRAM half"
        raise UserError(
            f"layer {layer.name}: {buffer} {room} holds {half * halves / 1024:g} KiB but one "
            f"fold's stationary tile needs {need_bytes / 1024:g} KiB: use a larger "
            f"{buffer}_sram_kib"
        )


@njit(cache=True)
def _window(order, rel, tile_bytes, trips, cap, union_bytes, whole):
    """Loop bits of the largest inner window whose tiles fit ``cap`` bytes (0: none).

    ``cap`` is an SRAM half; with ``whole`` (one group, one block of column folds) the whole
    nest may use the whole SRAM, since an operand that stays resident throughout is loaded
    once, tile by tile, and never replaced (no next tile to prefetch into a second half).
    """
    for start in range(3):
        window = 0
        need = tile_bytes
        for q in range(start, 3):
            bit = 1 << order[q]
            window |= bit
            if rel & bit:
                need *= trips[order[q]]
        if union_bytes >= 0 and window & 3 == 3:
            need = union_bytes * (trips[2] if window & 4 else 1)
        if need <= (2 * cap if start == 0 and whole else cap):
            return window
    return 0


@njit(cache=True)
def least_work(df, R, t_len, rext, text, cext, nm_n, nm_m, meta_bits, kblocks,
               block_index_bytes, rel_a, rel_w, rel_o, rel_s, *rest):  # pragma: no cover
    """(streaming steps of all the nest's folds together, stationary tiles with work), whatever
    the loop order: each (group, column fold, stream tile) streams its steps once per row fold
    it has, and every stationary tile is loaded at least once (tiles differ in the loops of
    ``rel_s``, always i and j; without the t loop a tile is one of the most row folds any
    stream tile has). Takes `fold_arrays`'s arguments after the order (a stream tiling's
    ``kernel_args``)."""
    steps = tiles = 0
    for g in range(text.shape[0]):
        for j in range(text.shape[1]):
            most = 0
            for t in range(-(-text[g, j] // t_len)):
                r = rext[g, j if rext.shape[1] > 1 else 0, t if rext.shape[2] > 1 else 0]
                folds = -(-r // R)
                steps += min(t_len, text[g, j] - t * t_len) * folds
                if rel_s & 4:
                    tiles += folds
                most = max(most, folds)
            if not rel_s & 4:
                tiles += most
    return steps, tiles


@njit(cache=True, inline="always")
def _position(a: int, b: int, c: int, order: tuple, comp: int, last: int) -> tuple:
    """(i, j, t) indices at nest positions (outer a, middle b, inner c) of loop ``order``; the
    compressed loop ``comp`` visits only 0, 1 and ``last`` (its position 2). Scalars only: the
    walk calls it per fold, and array arguments would cost two atomic reference counts each."""
    v0 = last if order[0] == comp and a == 2 else a
    v1 = last if order[1] == comp and b == 2 else b
    v2 = last if order[2] == comp and c == 2 else c
    return ((v0 if order[0] == 0 else v1 if order[1] == 0 else v2),
            (v0 if order[0] == 1 else v1 if order[1] == 1 else v2),
            (v0 if order[0] == 2 else v1 if order[1] == 2 else v2))


@njit(cache=True)
def fold_arrays(order, df, R, t_len, rext, text, cext, nm_n, nm_m, meta_bits, kblocks,
                block_index_bytes, rel_a, rel_w, rel_o, rel_s, red, trips, jb, sizes, union_bytes,
                new_j, new_i, distinct, bitmap, nzt, wb, pb, edge_bw, fill_full, buffers,
                compress, record=True, bandwidth=1.0, bound=-1, left=0, unloaded=0):
    """Walk one loop order's nest, fold by fold; returns the per-fold arrays of a FoldPlan, the
    summed counts and the timeline's cycles.

    ``sizes`` holds the largest (ifmap, filter, ofmap) tiles and the three SRAM halves, in
    bytes; ``trips`` the (i, j, t) trip counts of the nest (j: within a block of ``jb`` column
    folds, `Mapping.j_block`); ``buffers`` the stationary registers per PE (1 or
    2: the module docstring's cycles). ``compress`` (bool [3]) says which loops have
    alike middle iterations (same sizes, same fetch rules); the longest of them with at least 4
    iterations is enumerated at 0, 1 and its last only, iteration 1 carrying ``repeat = n-2``:
    each maximal run of repeated folds is one block repeated in place (see
    `accel_sim.engine.walk`). See the module docstring for the semantics.

    The folds are generated one at a time (the nest's counters in scalars; a fold's costs need
    only the fold before it and the one after) and each goes through the timeline
    (`accel_sim.timeline`, DRAM ``bandwidth`` in bytes/cycle) as its costs are computed.
    ``record=True`` counts the folds first and stores every fold's indices and costs (a
    FoldPlan); ``record=False`` stores nothing and returns the per-fold arrays empty: the
    mapper's cost of a mapping. With ``bound >= 0`` the walk stops once its cycles so far plus
    the least work still to come exceed ``bound`` (the rest of the nest is never generated) and
    returns ``bound + 1`` compute cycles (a candidate that cannot win under the latency
    objective). The least work, a lower bound whatever the order (cycles only accumulate): the
    streaming steps of the folds to come, and a fill for every stationary tile not loaded yet
    (at least the tiles with work less the loads so far; with two stationary buffers a load
    may be hidden, so only the streaming counts); the caller gives the whole nest's,
    ``left`` steps and ``unloaded`` tiles (`least_work`, the same for every order).

    Nothing in the per-fold loop passes an array to another function: Numba counts references
    to array arguments atomically, which once took more than half of this kernel's time.

    Returns:
        tuple: the per-fold arrays ``(fill, stream, edge, fetch, write, repeat, compressed
            loop, index, rows, cols)``, the counts (int64 [15]) and int64 [7]: cycles (compute
            + gemms, edge, DRAM, prefetch, write-back), folds (repeated ones counted each time)
            and GEMMs with a fold.
    """
    groups = text.shape[0]
    blocks = -(-text.shape[1] // jb)
    whole = groups == 1 and blocks == 1
    win_a = _window(order, rel_a, sizes[0], trips, sizes[3], union_bytes, whole)
    a_union = union_bytes >= 0 and win_a & 3 == 3
    new = new_j
    for q in range(3):
        if order[q] == 0:  # i before j: i-major first need
            new = new_i
            break
        if order[q] == 1:
            break
    win_w = _window(order, rel_w, sizes[1], trips, sizes[4], -1.0, whole)
    win_o = _window(order, rel_o, sizes[2], trips, sizes[5], -1.0, whole)
    resident = win_o & red != 0
    # Of the loops whose middle iterations are alike, the one with the most iterations is
    # compressed: iterations 1 .. n-2 are walked once, as iteration 1, and repeat n-2 times.
    comp = -1
    for q in range(3):
        if compress[q] and trips[q] >= 4 and (comp < 0 or trips[q] > trips[comp]):
            comp = q
    lens = np.empty(3, np.int64)
    for q in range(3):
        lens[q] = 3 if order[q] == comp else trips[order[q]]
    o = (order[0], order[1], order[2])
    comp_last = trips[comp] - 1 if comp >= 0 else 0
    reload_cost = fill_full if buffers == 1 else 0  # least cycles a stationary load adds
    f = 0  # with record: the folds, counted by a first pass that sizes the plan's arrays
    for walk in range(2 if record else 1):
        costing = walk == 1 or not record
        cols, repeat, fill, edge, fetch, write, stream, rows = (
            np.zeros(f, np.int64), np.ones(f, np.int64), np.zeros(f, np.int64),
            np.zeros(f, np.int64), np.zeros(f, np.int64), np.zeros(f, np.int64),
            np.zeros(f, np.int64), np.zeros(f, np.int64))
        index = np.zeros((f, 4), np.int64)
        totals = np.zeros(15, np.int64)
        st = timeline.start()
        folds = gemms = k = 0
        na = nb = ng = nk = 0  # nest positions (outer, middle, inner), group and block of the
        nc = -1  # next fold
        nj = nl = ni = nt = nr = ns = 0  # the next fold's j (in the layer, in its block), i,
        # t, rows and steps
        have = False  # whether a current fold (g, j, jl, i, tt, r, s) waits for its successor
        g = j = jl = i = tt = r = s = 0
        pg = pj = pi = pt = -1  # the fold before the current one
        since = 0  # with two buffers: steps and edge stalls since the last stationary load
        while True:
            # The folds come one at a time (scalars, no arrays): a walk that stops early (the
            # mapper's bound) never generates the rest, and one that stores nothing never
            # holds the fold sequence. Folds past a ragged edge have no work and are skipped.
            more = False
            while not more:
                nc += 1
                if nc == lens[2]:
                    nc, nb = 0, nb + 1
                    if nb == lens[1]:
                        nb, na = 0, na + 1
                        if na == lens[0]:
                            na, nk = 0, nk + 1
                            if nk == blocks:
                                nk, ng = 0, ng + 1
                if ng >= groups:
                    break
                ni, nl, nt = _position(na, nb, nc, o, comp, comp_last)
                nj = nk * jb + nl
                if nj >= text.shape[1]:  # past the last block's column folds
                    continue
                s_full = text[ng, nj]
                r_full = rext[ng, nj if rext.shape[1] > 1 else 0, nt if rext.shape[2] > 1 else 0]
                if nt * t_len < s_full and ni * R < r_full:
                    more = True
                    nr, ns = min(R, r_full - ni * R), min(t_len, s_full - nt * t_len)
            if not costing:
                if not more:
                    break
                f += 1
                continue
            if not have:  # the first fold: its successor comes next
                if not more:
                    break
                g, j, jl, i, tt, r, s = ng, nj, nl, ni, nt, nr, ns
                have = True
                continue
            c = cext[j]
            w = trips[comp] - 2 if comp >= 0 and (i, jl, tt)[comp] == 1 else 1
            cont = pg == g and not ((rel_s & 1 and pi != i) or (rel_s & 2 and pj != j)
                                    or (rel_s & 4 and pt != tt))
            # first visit within the window: every window loop the operand ignores is at 0
            moved = (1 if i else 0) | (2 if jl else 0) | (4 if tt else 0)
            fa = (moved & win_a & ~rel_a) == 0
            fw = (moved & win_w & ~rel_w) == 0
            # (integer divisions by a variable cost tens of cycles: skipped where not needed)
            dr = r * nm_m if nm_n == 1 else (r + nm_n - 1) // nm_n * nm_m
            ds = s * nm_m if nm_n == 1 else (s + nm_n - 1) // nm_n * nm_m
            if df == 0:  # ws
                a_words, w_words, o_words = s * dr, r * c, s * c
            elif df == 1:  # is
                a_words, w_words, o_words = dr * c, s * r, s * c
            else:  # os
                a_words, w_words, o_words = r * ds, c * s, r * c
            if a_union:
                a_fill = new[g, j, i] * s
            elif fa:
                a_fill = a_words
            else:
                a_fill = 0
            a_fill = math.ceil(a_fill * distinct)
            meta = 0
            w_fill = 0
            if fw:
                w_fill = w_words
                meta = (w_words * meta_bits + 7) // 8
                if bitmap:
                    if df == 0:
                        w_fill = nzt[g, j, i]
                    elif df == 1:
                        w_fill = nzt[g, tt, i]
                    else:
                        w_fill = nzt[g, j, tt]
                    meta = (w_words + 7) // 8
                if (tt == 0 if df == 2 else i == 0):  # block indices come with the first K tile
                    meta += kblocks[g, j if kblocks.shape[1] > 1 else 0,
                                    tt if kblocks.shape[2] > 1 else 0] * block_index_bytes
            # partial sums and outputs
            if red == 4:
                red_idx = tt
                last = (tt + 1) * t_len >= text[g, j]
            else:
                red_idx = i
                last = (i + 1) * R >= rext[g, j if rext.shape[1] > 1 else 0,
                                           tt if rext.shape[2] > 1 else 0]
            psum_rd = psum_wr = out_wr = spill_rd = spill_wr = 0
            starts = red_idx > 0
            ends = True
            if df == 2:  # os: the outputs stay in the PEs while the stream continues
                starts = starts and not cont
                ends = not more or ng != g or nj != j or ni != i
            if starts:
                psum_rd += o_words
                if not resident:
                    spill_rd += o_words
                    psum_wr += o_words
            if ends:
                if last:
                    out_wr = o_words
                else:
                    psum_wr += o_words
                    if not resident:
                        spill_wr += o_words
                        psum_rd += o_words
            slots = r * c * s
            a_reads = 0 if cont and df == 1 else a_words
            w_reads = 0 if cont and df == 0 else w_words
            read_bytes = (a_fill + w_fill) * wb + meta + spill_rd * pb
            write_bytes = out_wr * wb + spill_wr * pb
            totals[0] += w * a_reads
            totals[1] += w * a_fill
            totals[2] += w * w_reads
            totals[3] += w * w_fill
            totals[4] += w * out_wr
            totals[5] += w * out_wr
            totals[6] += w * psum_rd
            totals[7] += w * psum_wr
            totals[8] += w * 2 * meta
            totals[9] += w * read_bytes
            totals[10] += w * write_bytes
            totals[11] += w * meta
            totals[12] += w * (spill_rd + spill_wr) * pb
            totals[13] += w * slots
            totals[14] += w * (2 * slots + (0 if cont else buffers * r * c))
            if df == 0:  # no stall when a step's activations fit the edge
                e = 0 if dr <= edge_bw else (s * dr + edge_bw - 1) // edge_bw - s
            elif df == 2:
                e = 0 if r * ds <= s * edge_bw else (r * ds + edge_bw - 1) // edge_bw - s
            else:
                e = 0 if cont else dr - R
            e = max(0, e)
            if cont:
                fill_k = 0
            elif buffers == 1 or pg < 0:
                fill_k = fill_full
            else:  # the load (R cycles, IS: R + e) hides under the streaming since the last
                fill_k = max(0, R - since)
                if df == 1:
                    e = max(0, R + e - since) - fill_k
            if buffers == 2:
                if cont:
                    # a repeated fold alone in its block follows its own copies; a block of
                    # several folds holds a load, which restarts the count in every copy
                    single = w > 1 and not (
                        (pg == g and (pi, pj, pt)[comp] == (i, j, tt)[comp])
                        or (more and ng == g and (ni, nj, nt)[comp] == (i, j, tt)[comp]))
                    since += (w if single else 1) * (s + e)
                else:  # (an IS load fold's edge stall is part of its load)
                    since = s + (0 if df == 1 else e)
            st = timeline.step(st, fill_k, s, e, read_bytes, write_bytes, w, bandwidth)
            if record:
                index[k, 0], index[k, 1], index[k, 2], index[k, 3] = g, j, i, tt
                rows[k], stream[k], cols[k], repeat[k] = r, s, c, w
                fill[k], edge[k], fetch[k], write[k] = fill_k, e, read_bytes, write_bytes
            folds += w
            gemms += pg != g
            # Every later fold streams its steps; every stationary tile not loaded yet costs a
            # fill (a load so far may have been a reload: loads, not tiles, are counted off).
            left -= w * s
            unloaded -= 0 if cont else w
            if bound >= 0 and timeline.elapsed(st) + left + max(0, unloaded) * reload_cost > bound:
                cycles = np.zeros(7, np.int64)
                cycles[0] = bound + 1
                return (fill, stream, edge, fetch, write, repeat, comp, index, rows, cols, totals,
                        cycles)
            pg, pj, pi, pt = g, j, i, tt
            k += 1
            if not more:
                break
            g, j, jl, i, tt, r, s = ng, nj, nl, ni, nt, nr, ns
    compute, edges, dram, prefetch, writeback = timeline.finish(st, bandwidth)
    cycles = np.array([compute, edges, dram, prefetch, writeback, folds, gemms], np.int64)
    return (fill, stream, edge, fetch, write, repeat, comp, index, rows, cols, totals, cycles)
