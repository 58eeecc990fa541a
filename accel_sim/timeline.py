"""The double-buffered DRAM timeline, walked one fold at a time (Numba).

`accel_sim.engine` documents the timeline (prefetch, busy, DRAM stalls, write-back). This
module holds its arithmetic as a streaming walker, so that the engine can walk a stored plan
(`accel_sim.engine.walk`) and the mapper can cost a mapping while its folds are generated
(`accel_sim.mapping.fold_arrays` with ``record=False``) without storing a plan: both feed
the same `step` and read the same `finish`.

A fold's DRAM stall depends on the write-back of the fold before it and the fetch of the fold
after it; a maximal run of folds with ``repeat = w > 1`` is one block repeated w times in place,
whose first and last folds see the folds around the run on the first and last copy and the
block's own last and first fold on the copies between. The walker therefore settles a fold's
stall once its successor is known, and a block's edge folds once the block has ended.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

State = tuple
"""A walker's state: a tuple of 14 ints (a value, so the kernels keep it in registers):
cycles so far (compute, edge, DRAM, prefetch), folds seen, the open block (weight, length, its
first fold's busy cycles and fetch, the write-back before it, its second fold's fetch) and the
last fold (busy cycles, write-back, the write-back before it)."""


@njit(cache=True)
def start() -> State:
    """An empty walker state."""
    zero = np.int64(0)
    return (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)


@njit(cache=True)
def stall(busy: int, traffic: int, bandwidth: float) -> int:
    """Cycles a fold busy for ``busy`` cycles waits for ``traffic`` DRAM bytes."""
    return max(0, math.ceil(traffic / bandwidth) - busy)


@njit(cache=True)
def _close(st: State, after: int, bandwidth: float) -> int:
    """DRAM stall cycles of the open block's edge folds; ``after``: the next fold's fetch."""
    _, _, _, _, _, w, length, busy, fetch, before, nxt, last_busy, write, prev = st
    if w == 1:
        return stall(busy, before + after, bandwidth)
    if length == 1:
        return (stall(busy, before + fetch, bandwidth)
                + (w - 2) * stall(busy, write + fetch, bandwidth)
                + stall(busy, write + after, bandwidth))
    return (stall(busy, before + nxt, bandwidth)
            + (w - 1) * stall(busy, write + nxt, bandwidth)
            + (w - 1) * stall(last_busy, prev + fetch, bandwidth)
            + stall(last_busy, prev + after, bandwidth))


@njit(cache=True)
def step(st: State, fill: int, stream: int, edge: int, fetch: int, write: int, repeat: int,
         bandwidth: float) -> State:
    """The state after the next fold of the plan (cycles and bytes as in
    `accel_sim.mapping.FoldPlan`)."""
    (compute, edges, dram, prefetch, folds, w, length, s_busy, s_fetch, before, s_next,
     p_busy, p_write, p_prev) = st
    busy = fill + stream + edge
    if folds == 0:
        prefetch = np.int64(math.ceil(fetch / bandwidth))
    if folds > 0 and w > 1 and repeat > 1:  # the fold continues the current repeated block
        if length == 1:
            s_next = fetch
        else:  # the previous fold is inside the block: its neighbours are known now
            dram += w * stall(p_busy, p_prev + fetch, bandwidth)
        length += 1
    else:
        if folds > 0:
            dram += _close(st, fetch, bandwidth)
        w, length, s_busy, s_fetch, before = repeat, 1, busy, fetch, p_write
    return (compute + w * (fill + stream), edges + w * edge, dram, prefetch, folds + 1, w, length,
            s_busy, s_fetch, before, s_next, busy, write, p_write)


@njit(cache=True)
def elapsed(st: State) -> int:
    """Cycles accounted so far (a lower bound of the total: stalls of open folds come later)."""
    return st[0] + st[1] + st[2] + st[3]


@njit(cache=True)
def finish(st: State, bandwidth: float) -> tuple[int, int, int, int, int]:
    """(compute + gemms, edge stall, DRAM stall, prefetch, write-back) cycles of the walk."""
    compute, edges, dram, prefetch, folds = st[0], st[1], st[2], st[3], st[4]
    writeback = 0
    if folds > 0:
        dram += _close(st, 0, bandwidth)
        writeback = math.ceil(st[12] / bandwidth)
    return compute, edges, dram, prefetch, writeback
