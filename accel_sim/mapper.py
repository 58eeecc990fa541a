"""The mapper: per layer, generate candidate mappings, cost each with the engine, keep the best.

As in ZigZag's flow (generate spatial/temporal mappings -> cost model -> reduce), three pieces:

- `candidates` generates mappings (`accel_sim.mapping.Mapping`): every loop order
  of the three fold loops (row folds i, column folds j, stream tiles t), each untiled and with
  every stream tile at which some operand's reuse window starts to fit its SRAM half (the
  largest tile of each such regime: a smaller tile of the same regime moves the same data and
  only adds fills). SCALE-Sim's schedule (``j > i > t``, untiled) is always among them. Each
  order at each of those stream tiles is also tried in blocks of column folds
  (`accel_sim.mapping.Mapping.j_block`), at every block size where a window holding j
  starts to fit (the largest block of each regime).
- the cost model of one candidate is the engine's timeline (`accel_sim.timeline`), fed by
  `accel_sim.mapping.fold_arrays` while it generates the candidate's folds: the walk
  `accel_sim.engine.run_plan` makes of a stored plan, without storing the plan. Under the
  latency objective a walk stops once its cycles so far plus a lower bound of the work still to
  come exceed the best candidate's so far.
- `choose` reduces by the objective: ``latency`` (fewest total cycles, ties: less energy),
  ``energy`` (least energy, ties: fewer cycles) or ``edp`` (energy x cycles).

``mapping="scalesim"`` skips the search and runs SCALE-Sim's fixed schedule, whose compute
cycles equal SCALE-Sim's. Because that schedule is a candidate, ``best`` never has more total
cycles than ``scalesim`` under the latency objective.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import replace

import numpy as np
from numba import njit

from accel_sim.energy import energy
from accel_sim.engine import LayerRun, action_counts, layer_run, run_plan
from accel_sim.hardware import HardwareSpec
from accel_sim.mapping import (
    COUNT_NAMES,
    LOOPS,
    SCALESIM,
    FoldPlan,
    LayerGeometry,
    Mapping,
    StreamTiling,
    fold_arrays,
    geometry,
    least_work,
    order_code,
    plan_folds,
    stream_tiling,
)
from accel_sim.packing import BLOCK_INDEX_BYTES
from accel_sim.sparsity import DENSE, LayerSparsity
from accel_sim.workload import GemmLayer
from crisp.errors import UserError

MAPPINGS = ("best", "scalesim")
"""``best``: search per layer; ``scalesim``: SCALE-Sim's fixed schedule."""
OBJECTIVES = ("latency", "energy", "edp")


def check_choice(mapping: str, objective: str) -> None:
    """Raise UserError for an unknown mapping or objective name."""
    if mapping not in MAPPINGS:
        raise UserError(f"mapping {mapping!r}: allowed {', '.join(MAPPINGS)}")
    if objective not in OBJECTIVES:
        raise UserError(f"objective {objective!r}: allowed {', '.join(OBJECTIVES)}")


def _by_tile(geo: LayerGeometry) -> Candidates:
    """The mappings the mapper costs for one layer (see module docstring), by stream tile.

    Every order untiled, and for each order every stream tile at which a reuse window inside
    the t loop starts to fit: a window of operand X that holds a loop X does not depend on (the
    only way a window saves traffic) and whose footprint grows with the tile. Each such regime
    contributes its largest tile.
    """
    hw, layer, packing, df = geo.hw, geo.layer, geo.packing, geo.dataflow
    R, C = hw.array.rows, hw.array.cols
    wb, pb = hw.array.word_bytes, hw.array.psum_bits // 8
    memory = hw.memory
    n, m = packing.nm or (1, 1)
    most = max(1, packing.most_rows)
    rows = min(R, most)
    trips_i = -(-layer.P // R) if df == "os" else max(1, -(-most // R))
    trips_j = max(1, -(-(layer.P if df == "is" else layer.N) // C))
    w_step = wb + (math.log2(m) / 8 if packing.nm else 0)
    blocks = packing.need_blocks is not None
    # per operand that grows with the tile: (loops it depends on besides t, bytes per step, SRAM)
    if df == "ws":
        growing = (("ij" if blocks else "i", -(-rows // n) * m * wb * geo.distinct,
                     memory.ifmap_sram_kib * 512), ("j", C * pb, memory.ofmap_sram_kib * 512))
    elif df == "is":
        growing = (("i", rows * w_step, memory.filter_sram_kib * 512),
                   ("j", C * pb, memory.ofmap_sram_kib * 512))
    else:
        growing = (("ij" if blocks else "i", R * m / n * wb * geo.distinct,
                    memory.ifmap_sram_kib * 512), ("j", C * w_step, memory.filter_sram_kib * 512))
    union_step = (float(geo.union[2].max(initial=1)) * wb * geo.distinct
                  if geo.union is not None else 0.0)
    union_tile = int(memory.ifmap_sram_kib * 512 // union_step) if union_step else None
    # IS: filters of one block-row skip its blocks
    fixed = (geo.sparsity.block, C) if df == "is" and blocks else ()
    # per operand that grows with the columns of a block: (loops it depends on besides j,
    # bytes per column fold at a stream tile of 1 and of more steps, SRAM half)
    if df == "ws":
        per_j = (("i", rows * C * w_step, 0, memory.filter_sram_kib * 512),
                 ("t", 0, C * pb, memory.ofmap_sram_kib * 512))
    elif df == "is":
        per_j = (("i", -(-rows // n) * m * C * wb * geo.distinct, 0, memory.ifmap_sram_kib * 512),
                 ("t", 0, C * pb, memory.ofmap_sram_kib * 512))
    else:
        per_j = (("t", 0, C * w_step, memory.filter_sram_kib * 512),
                 ("i", R * C * pb, 0, memory.ofmap_sram_kib * 512))
    return _candidates(trips_i, trips_j, growing, union_tile, fixed, geo.stream_full, per_j)


Candidates = tuple[tuple[tuple[int | None, int | None], tuple[Mapping, ...], np.ndarray], ...]
"""Candidate mappings by stream tiling: ((stream tile, column-fold block), its mappings, their
loop orders as an int64 [mappings, 3] array of `accel_sim.mapping.order_code`), in order of
first use."""


def candidates(geo: LayerGeometry) -> list[Mapping]:
    """The mappings the mapper costs for one layer, by stream tile (see `_by_tile`)."""
    return [mapping for _, mappings, _ in _by_tile(geo) for mapping in mappings]


@functools.lru_cache(maxsize=65536)
def _candidates(trips_i: int, trips_j: int, growing: tuple, union_tile: int | None,
                fixed: tuple[int, ...], stream_full: int, per_j: tuple) -> Candidates:
    """`_by_tile` from its numbers (layers of a sweep share them: cached; the arrays are
    shared, do not modify them).

    ``growing``: per operand whose tile grows with the stream tile, (loops it depends on
    besides t, bytes per step, SRAM half in bytes); ``union_tile``: the stream tile at which a
    WS ifmap union fits (None: no union); ``fixed``: tiles every order gets; ``per_j``: per
    operand whose footprint grows with the column folds of a block, (loops it depends on
    besides j, bytes per column fold: fixed and per step, SRAM half in bytes)."""
    trips = {"i": trips_i, "j": trips_j}
    by_tile: dict[int | None, list[str]] = {None: ["jit", "ijt"]}
    for order in _ORDERS:
        tiles = set(fixed)
        for window in _windows(order):
            for rel, step, cap in growing:
                if _ignores(window, rel):  # the window holds a loop the operand ignores
                    tiles.add(int(cap // (step * math.prod(trips[x] for x in window if x in rel))))
            if union_tile is not None and "i" in window and "j" in window:
                tiles.add(union_tile)
        for t in sorted(tiles):
            if 1 <= t < stream_full:
                by_tile.setdefault(t, []).append(order)
    blocked: dict[tuple[int | None, int], list[str]] = {}
    for t in by_tile:
        steps = stream_full if t is None else t
        nest = {**trips, "t": -(-stream_full // steps)}
        for order in _ORDERS:
            for block in _blocks(order, nest, per_j, steps):
                blocked.setdefault((t, block), []).append(order)
    keyed = [((t, None), orders) for t, orders in by_tile.items()] + list(blocked.items())
    return tuple((key, tuple(_mapping(o, *key) for o in orders), _codes(tuple(orders)))
                 for key, orders in keyed)


def _blocks(order: str, trips: dict[str, int], per_j: tuple, steps: int) -> set[int]:
    """Column-fold blocks worth trying for ``order`` at a stream tile of ``steps``: for every
    inner window holding j and a loop some operand ignores, the most column folds whose
    footprint of that operand fits its SRAM half (the largest block of each reuse regime),
    when that is between 1 and all the column folds. None for an order with j outermost:
    blocking it walks the same folds and only fetches again what does not depend on j."""
    found: set[int] = set()
    if order[0] == "j":  # blocks of the outermost loop only re-fetch what ignores j
        return found
    for start in range(3):
        window = order[start:]
        if "j" not in window:
            continue
        for rel, fixed, per_step, cap in per_j:
            if not _ignores(window, rel + "j"):
                continue
            size = (fixed + per_step * steps) * math.prod(trips[x] for x in window if x in rel)
            block = int(cap // size) if size else 0
            if 1 <= block < trips["j"]:
                found.add(block)
    return found


_ORDERS = tuple("".join(p) for p in itertools.permutations(LOOPS))
_mapping = functools.lru_cache(maxsize=65536)(Mapping)  # candidates share their Mapping objects


@functools.cache
def _codes(orders: tuple[str, ...]) -> np.ndarray:
    """int64 [orders, 3]: `accel_sim.mapping.order_code` of each order (shared: do not
    modify)."""
    return np.stack([order_code(o) for o in orders])


@functools.cache
def _windows(order: str) -> tuple[str, ...]:
    """The reuse windows inside the t loop of ``order``: suffixes of its inner loops."""
    inner = order[order.index("t") + 1:]
    return tuple(inner[start:] for start in range(len(inner)))


@functools.cache
def _ignores(window: str, loops: str) -> bool:
    """True if ``window`` holds a loop not in ``loops``."""
    return bool(set(window) - set(loops))


def compulsory_dram_bytes(geo: LayerGeometry) -> int:
    """The layer's DRAM traffic floor in bytes, whatever the mapping.

    Stored weights of the format the hardware runs (non-zeros when the layer runs N:M-packed,
    block-skipped or bitmap-compressed, else all of them) with their metadata (N:M offsets per
    non-zero, one bitmap bit per weight, one 16-bit index per K-block some filter of the group
    keeps), plus every distinct input word a kept weight needs (K indices with a non-zero in
    some filter, moved as the feature map), plus the outputs of filters with a non-zero weight,
    each at the operand width.
    """
    layer, sp, wb = geo.layer, geo.sparsity, geo.hw.array.word_bytes
    g, n, k = layer.groups, layer.N, layer.K
    nonzeros = sp.nonzeros(layer)
    packed = geo.packing.nm is not None or geo.packing.need_blocks is not None or geo.bitmap
    weights = (nonzeros if packed else g * n * k) * wb
    if geo.packing.nm is not None:
        weights += math.ceil(nonzeros * math.log2(geo.packing.nm[1]) / 8)
    if geo.bitmap:
        weights += math.ceil(g * n * k / 8)
    if geo.packing.need_blocks is not None:
        weights += int(geo.packing.need_blocks.any(axis=1).sum()) * BLOCK_INDEX_BYTES
    inputs, outputs = (g * k, g * n) if sp.mask is None else sp.io_counts(g)
    in_words = math.ceil(layer.P * inputs * geo.distinct)
    return (in_words + layer.P * outputs) * wb + weights


_CYCLES = 5
_ROW = 7  # search row: 5 cycle terms, folds, gemms, then the summed counts


_UNBOUNDED = np.iinfo(np.int64).max
"""The latency objective's bound before any candidate has been walked (a walk never exceeds it)."""


@njit(cache=True)
def _search(orders, bandwidth, bound, *args):
    """Cost every loop order of one stream tiling without storing a plan: int64
    [orders, 7 + counts] rows of (compute + gemms, edge stall, DRAM stall, prefetch, write-back,
    folds, gemms, summed counts); int64 [orders] their total cycles; the first row with the
    fewest and how many rows have that many. With ``bound >= 0`` (latency objective: the fewest
    cycles found so far, `_UNBOUNDED` before any) each walked order's cycles lower the
    bound for the next, and an order's walk stops once it cannot end within the bound
    (`accel_sim.mapping.fold_arrays`), its row then shows ``bound + 1`` cycles. The least
    work of the nest, the same for every order, is counted once here."""
    out = np.zeros((orders.shape[0], _ROW + len(COUNT_NAMES)), np.int64)
    cycles = np.zeros(orders.shape[0], np.int64)
    left = unloaded = 0
    if bound >= 0:
        left, unloaded = least_work(*args)
    for k in range(orders.shape[0]):
        result = fold_arrays(orders[k], *args, False, bandwidth, bound, left, unloaded)
        out[k, :_ROW] = result[11]
        out[k, _ROW:] = result[10]
        cycles[k] = out[k, :_CYCLES].sum()
        if bound >= 0:
            bound = min(bound, cycles[k])
    at_fewest = np.flatnonzero(cycles == cycles.min())
    return out, cycles, at_fewest[0], len(at_fewest)


def _energy_pj(row: np.ndarray, geo: LayerGeometry, nm: tuple[int, int] | None) -> float:
    hw = geo.hw
    summed = dict(zip(COUNT_NAMES, row[_ROW:].tolist(), strict=True))
    counts = action_counts(summed, geo.layer.P * geo.sparsity.nonzeros(geo.layer), nm, hw)
    return sum(energy(counts, hw.energy, int(row[:_CYCLES].sum()), hw.array.clock_mhz).values())


def choose(geo: LayerGeometry, objective: str = "latency") -> Mapping:
    """The candidate with the lowest cost under ``objective`` (the first one on a full tie).

    Every loop order of a stream tile is costed in one kernel call (the engine's own timeline
    walk over the plan's folds). Stream tiles whose stationary tile does not fit its SRAM are
    skipped; if SCALE-Sim's untiled schedule does not fit either, its error is raised.
    """
    return _best(geo, objective)[0]


def _best(geo: LayerGeometry, objective: str) -> tuple[Mapping, np.ndarray, tuple | None]:
    """The chosen mapping, its search row and its packing's N:M (see `choose`)."""
    rows, totals, found = [], [], []
    bound = _UNBOUNDED if objective == "latency" else -1
    tied: list[tuple[int, int, int]] = []  # latency: (tiling, first row, rows) at the bound
    for (t_tile, j_block), mappings, codes in _by_tile(geo):
        try:
            tiling = stream_tiling(geo, t_tile, j_block=j_block)
        except UserError:
            if t_tile is None and j_block is None:
                raise
            continue
        costs, cycles, first, ties = _cost(geo, tiling, codes, bound)
        if objective == "latency":  # later walks stop once they cannot win or tie
            fewest = cycles[first]
            if fewest < bound:
                bound, tied = fewest, []
            if fewest == bound:
                tied.append((len(rows), first, ties))
        rows.append(costs)
        totals.append(cycles)
        found.append((mappings, tiling.ext.packing.nm))
    if objective == "latency":
        if sum(ties for _, _, ties in tied) == 1:
            (t, k, _), = tied
            return found[t][0][k], rows[t][k], found[t][1]
        # equal cycles: equal counts and N:M give equal energy, priced once; the first of the
        # least energy wins
        best = None
        priced: dict[tuple, float] = {}
        for t, _, _ in tied:
            nm = found[t][1]
            for k in np.flatnonzero(totals[t] == bound):
                key = (rows[t][k, _ROW:].tobytes(), nm)
                if key not in priced:
                    priced[key] = _energy_pj(rows[t][k], geo, nm)
                if best is None or priced[key] < best[0]:
                    best = (priced[key], t, k)
        _, t, k = best
        return found[t][0][k], rows[t][k], found[t][1]
    table = np.concatenate(rows)
    every = [(mapping, nm) for mappings, nm in found for mapping in mappings]
    cycles = np.concatenate(totals).astype(float)
    pj = np.array([_energy_pj(table[k], geo, every[k][1]) for k in range(len(every))])
    score = pj if objective == "energy" else pj * cycles
    pick = int(np.lexsort((cycles, score))[0])
    return every[pick][0], table[pick], every[pick][1]


def _cost(geo: LayerGeometry, tiling: StreamTiling, codes: np.ndarray, bound: int = -1
          ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Search rows of the loop orders ``codes`` at one stream tiling, their total cycles, the
    first row with the fewest and how many have that many (see `_search`)."""
    return _search(codes, float(geo.hw.memory.dram_bytes_per_cycle), bound, *tiling.kernel_args)


_MEMO: dict[tuple, LayerRun] = {}
"""Runs of layers without a mask, by shape, hardware, mapping and objective (a network repeats
its blocks; a sweep repeats its networks). Runs carry no layer name."""
_MEMO_SIZE = 4096


def clear_memo() -> None:
    """Forget the memoised runs of unmasked layers (benchmarks time a fresh search)."""
    _MEMO.clear()


def run_layer(
    layer: GemmLayer,
    hw: HardwareSpec,
    sparsity: LayerSparsity = DENSE,
    mapping: str | Mapping = "best",
    objective: str = "latency",
) -> LayerRun:
    """Map one layer (search, SCALE-Sim's schedule, or a given Mapping) and run it.

    The run comes from the kernel that costs mappings, which walks the same folds through the
    same timeline as `accel_sim.engine.run_plan` without storing a plan (a test checks that
    both agree); `map_layer` also builds the plan.

    Returns:
        the engine's run of the chosen plan, with ``mapping`` and ``compulsory_dram_bytes`` set.

    Raises:
        UserError: an unknown mapping or objective, a mask that does not fit the layer, or an
            SRAM too small for one fold's stationary tile.
    """
    if not isinstance(mapping, Mapping):
        check_choice(mapping, objective)
    key = None
    if sparsity.mask is None:
        key = (layer.shape_key, hw, sparsity.scheme, mapping, objective)
        if key in _MEMO:
            return _MEMO[key]
    geo = geometry(layer, hw, sparsity)
    if mapping == "best":
        mapping, row, nm = _best(geo, objective)
    else:
        mapping = _fixed(mapping)
        tiling = stream_tiling(geo, mapping.t_tile, j_block=mapping.j_block)
        row, nm = _cost(geo, tiling, _codes((mapping.order,)))[0][0], tiling.ext.packing.nm
    run = layer_run(row[:_ROW], row[_ROW:], layer.P * sparsity.nonzeros(layer), nm, hw,
                    str(mapping), compulsory_dram_bytes(geo))
    if key is not None:
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.clear()
        _MEMO[key] = run
    return run


def _fixed(mapping: str | Mapping) -> Mapping:
    """A mapping that needs no search: SCALE-Sim's schedule for ``scalesim``, else as given."""
    return SCALESIM if mapping == "scalesim" else mapping


def map_layer(
    layer: GemmLayer,
    hw: HardwareSpec,
    sparsity: LayerSparsity = DENSE,
    mapping: str | Mapping = "best",
    objective: str = "latency",
) -> tuple[FoldPlan, LayerRun]:
    """Like `run_layer`, also returning the chosen plan (its run walks the stored plan)."""
    if not isinstance(mapping, Mapping):
        check_choice(mapping, objective)
    geo = geometry(layer, hw, sparsity)
    mapping = choose(geo, objective) if mapping == "best" else _fixed(mapping)
    plan = plan_folds(layer, hw, sparsity, mapping, geo)
    return plan, replace(run_plan(plan, hw), compulsory_dram_bytes=compulsory_dram_bytes(geo))
