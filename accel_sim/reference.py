"""A slow per-cycle model of the dense systolic array, for tests only.

PEs hold registers; operands arrive skewed from the edges and move one PE per cycle; the model
computes the actual outputs and counts SRAM accesses as registers load and store. It runs one GEMM
``O[P, N] = A[P, K] x W[N, K]^T`` with the engine's loop order (column fold outer, row fold inner).

- **WS**: each fold shifts an R x C weight tile in from the top, one row per cycle (R cycles,
  one filter SRAM read per valid weight); then A's rows stream in from the left, row i delayed by
  i cycles (one ifmap SRAM read per valid activation); partial sums flow down and leave the bottom
  row (one ofmap SRAM write per valid output, plus one read-back when a previous row fold already
  holds a partial sum of it).
- **IS**: the same with the roles swapped: A^T's tile is stationary and W's rows stream.
- **OS**: A's rows enter from the left and W's rows from the top, both skewed; each PE accumulates
  its output; at the end of the fold the r x c outputs move to shadow registers and are written
  (one ofmap write each) while the next fold starts.

A fold lasts until its wavefront has passed the whole array (every PE, used or not, has seen its
last step): that is how SCALE-Sim counts, so partial folds cost the full R and C.
`run_reference` reports the cycles elapsed minus one, SCALE-Sim's 'Total Cycles'.

With ``weight_buffers=2`` (WS, IS) every PE has two stationary registers (banks) besides the
load register of its column's shift chain, and the folds run as one continuous pipeline
(`_pipelined_folds`): fold f's tile shifts down each column's chain one row per cycle (bottom
row's value first, column j starting j cycles after column 0), and when a column's chain is
full (R cycles) its values move at once into bank ``f % 2``. A load starts once the previous
load has left column 0's chain and fold f-2 (the bank's last user) has sent its last step into
the array; a fold starts streaming once the previous fold's last step has entered and its own
tile is in column 0's bank. Every value carries its fold's tag, and a PE asserts that the
register it multiplies with holds that fold's weight and that the partial sum from above
belongs to the same fold and step, so a schedule that overwrote a register still in use, or
used one not yet loaded, fails loudly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class ReferenceResult:
    """Outputs and counts of one simulated GEMM.

    Attributes:
        output: ``[P, N]`` the values that left the array.
        cycles: cycles elapsed minus one (SCALE-Sim's 'Total Cycles').
        ifmap_sram_reads, filter_sram_reads, ofmap_sram_writes, psum_reads: word accesses.
    """

    output: np.ndarray
    cycles: int = 0
    ifmap_sram_reads: int = 0
    filter_sram_reads: int = 0
    ofmap_sram_writes: int = 0
    psum_reads: int = 0


def _row_reduction_fold(
    stationary: np.ndarray, stream: np.ndarray, rows: int, cols: int
) -> tuple[np.ndarray, int, int, int, int]:
    """One WS/IS fold: ``stream[T, r] x stationary[r, c]`` on an R x C array, cycle by cycle.

    Returns (outputs [T, c], cycles, stationary reads, stream reads, output writes).
    """
    r, c = stationary.shape
    t_len = stream.shape[0]
    weights = np.zeros((rows, cols), stream.dtype)
    st_reads = 0
    for step in range(rows):  # shift the tile down one row per cycle, bottom row first
        entering = rows - 1 - step
        weights = np.vstack([np.zeros((1, cols), stream.dtype), weights[:-1]])
        if entering < r:
            weights[0, :c] = stationary[entering]
            st_reads += c
    cycles = rows
    act = np.zeros((rows, cols), stream.dtype)
    psum = np.zeros((rows, cols), stream.dtype)
    token = np.zeros((rows, cols), bool)  # the wavefront: which PEs hold a step this cycle
    out = np.zeros((t_len, c), stream.dtype)
    reads = writes = 0
    t = 0
    while True:
        edge = np.zeros(rows, stream.dtype)
        edge_token = np.array([0 <= t - i < t_len for i in range(rows)])
        token = np.hstack([edge_token[:, None], token[:, :-1]])
        if not token.any():  # the wavefront has left the array
            break
        for i in range(min(r, rows)):
            if edge_token[i]:
                edge[i] = stream[t - i, i]
                reads += 1
        act = np.hstack([edge[:, None], act[:, :-1]])
        psum = np.vstack([np.zeros((1, cols), stream.dtype), psum[:-1]]) + act * weights
        cycles += 1
        for j in range(c):  # outputs leaving the bottom row
            step = t - (rows - 1) - j
            if 0 <= step < t_len:
                out[step, j] = psum[rows - 1, j]
                writes += 1
        t += 1
    return out, cycles, st_reads, reads, writes


def _os_fold(
    a: np.ndarray, w: np.ndarray, rows: int, cols: int
) -> tuple[np.ndarray, int, int, int]:
    """One OS fold: ``a[r, T] x w[c, T]^T`` accumulated in place; returns (out, cycles, a reads,
    w reads)."""
    r, t_len = a.shape
    c = w.shape[0]
    act = np.zeros((rows, cols), a.dtype)
    wgt = np.zeros((rows, cols), a.dtype)
    acc = np.zeros((rows, cols), a.dtype)
    token = np.zeros((rows, cols), bool)  # the wavefront: which PEs hold a step this cycle
    a_reads = w_reads = 0
    cycles = 0
    t = 0
    while True:
        edge_token = np.array([0 <= t - i < t_len for i in range(rows)])
        token = np.hstack([edge_token[:, None], token[:, :-1]])
        if not token.any():  # the wavefront has left the array
            break
        left = np.zeros(rows, a.dtype)
        top = np.zeros(cols, a.dtype)
        for i in range(min(r, rows)):
            if 0 <= t - i < t_len:
                left[i] = a[i, t - i]
                a_reads += 1
        for j in range(min(c, cols)):
            if 0 <= t - j < t_len:
                top[j] = w[j, t - j]
                w_reads += 1
        act = np.hstack([left[:, None], act[:, :-1]])
        wgt = np.vstack([top[None, :], wgt[:-1]])
        acc += act * wgt
        cycles += 1
        t += 1
    return acc[:r, :c], cycles, a_reads, w_reads


def _pipelined_folds(
    tiles: list[np.ndarray], streams: list[np.ndarray], rows: int, cols: int
) -> tuple[list[np.ndarray], int, int, int]:
    """Folds ``streams[f] [T, r] x tiles[f] [r, c]`` back to back on an R x C array with two
    stationary banks per PE, cycle by cycle (module docstring).

    Returns (outputs [T, c] per fold, cycles elapsed minus one, stationary reads, stream reads).
    """
    nf = len(tiles)
    dtype = tiles[0].dtype
    bank = np.zeros((2, rows, cols), dtype)
    tag = np.full((2, rows, cols), -1)  # the fold whose value a bank register holds
    chain = np.zeros((rows, cols), dtype)  # the load registers
    act = np.zeros((rows, cols), dtype)
    act_tag = np.full((rows, cols, 2), -1)  # (fold, step) of the value in each PE
    psum = np.zeros((rows, cols), dtype)
    psum_tag = act_tag.copy()
    outs = [np.zeros((s.shape[0], t.shape[1]), dtype) for t, s in zip(tiles, streams, strict=True)]
    load_start = [-1] * nf
    start = [-1] * nf
    st_reads = reads = 0
    cycle = 0
    loaded = streamed = 0  # loads begun, folds begun
    while streamed < nf or (act_tag[:, :, 0] >= 0).any():
        f = loaded  # the loader
        if f < nf and (f == 0 or cycle >= load_start[f - 1] + rows) and (
                f < 2 or (start[f - 2] >= 0 and cycle >= start[f - 2] + streams[f - 2].shape[0])):
            load_start[f] = cycle
            loaded += 1
        f = streamed  # the controller
        if f < nf and load_start[f] >= 0 and cycle >= load_start[f] + rows and (
                f == 0 or cycle >= start[f - 1] + streams[f - 1].shape[0]):
            start[f] = cycle
            streamed += 1
        # the left edge: row i sees step (cycle - start - i) of the fold streaming there
        edge = np.zeros(rows, dtype)
        edge_tag = np.full((rows, 2), -1)
        for i in range(rows):
            for f in range(streamed):
                step = cycle - start[f] - i
                if 0 <= step < streams[f].shape[0]:
                    edge_tag[i] = f, step
                    if i < streams[f].shape[1]:
                        edge[i] = streams[f][step, i]
                        reads += 1
        act = np.hstack([edge[:, None], act[:, :-1]])
        act_tag = np.concatenate([edge_tag[:, None], act_tag[:, :-1]], axis=1)
        above = np.vstack([np.zeros((1, cols), dtype), psum[:-1]])
        above_tag = np.concatenate([np.full((1, cols, 2), -1), psum_tag[:-1]])
        psum = np.zeros_like(psum)
        for i in range(rows):
            for j in range(cols):
                f, step = act_tag[i, j]
                if f < 0:
                    continue
                assert tag[f % 2, i, j] == f, f"PE ({i}, {j}): fold {f} meets another's weight"
                assert i == 0 or tuple(above_tag[i, j]) == (f, step), f"PE ({i}, {j}): psums mix"
                psum[i, j] = above[i, j] + act[i, j] * bank[f % 2, i, j]
        psum_tag = act_tag.copy()
        for j in range(cols):  # outputs leaving the bottom row
            f, step = act_tag[rows - 1, j]
            if f >= 0 and j < tiles[f].shape[1]:
                outs[f][step, j] = psum[rows - 1, j]
        # the loads in flight shift their chains down one row; a full chain moves into its bank
        # (end of cycle: a register written now is read from the next cycle on)
        for f in range(loaded):
            r, c = tiles[f].shape
            for j in range(cols):
                m = cycle - load_start[f] - j  # the value entering column j: row rows-1-m
                if 0 <= m < rows:
                    row = rows - 1 - m
                    chain[1:, j] = chain[:-1, j].copy()
                    chain[0, j] = tiles[f][row, j] if row < r and j < c else 0
                    st_reads += row < r and j < c
                    if m == rows - 1:
                        bank[f % 2, :, j], tag[f % 2, :, j] = chain[:, j], f
        cycle += 1
    return outs, cycle - 2, st_reads, reads


def run_reference(
    a: np.ndarray, w: np.ndarray, rows: int, cols: int, dataflow: str, weight_buffers: int = 1
) -> ReferenceResult:
    """Simulate ``O = A x W^T`` (A ``[P, K]``, W ``[N, K]``) cycle by cycle on an R x C array
    (``weight_buffers``: stationary registers per PE, 1 or 2; 2 applies to WS and IS)."""
    p, k = a.shape
    n = w.shape[0]
    res = ReferenceResult(np.zeros((p, n), a.dtype))
    elapsed = 0
    if dataflow == "os":
        for j in range(math.ceil(n / cols)):
            for i in range(math.ceil(p / rows)):
                ps, ns = slice(i * rows, (i + 1) * rows), slice(j * cols, (j + 1) * cols)
                out, cyc, ar, wr = _os_fold(a[ps], w[ns], rows, cols)
                res.output[ps, ns] = out
                elapsed += cyc
                res.ifmap_sram_reads += ar
                res.filter_sram_reads += wr
                res.ofmap_sram_writes += out.size
        res.cycles = elapsed - 1
        return res
    # WS: stationary W^T [K, N], stream A [P, K], outputs [P, N]; IS: stationary A^T, stream W.
    stationary, stream = (w.T, a) if dataflow == "ws" else (a.T, w)
    sc = stationary.shape[1]
    result = np.zeros((stream.shape[0], sc), a.dtype)
    if weight_buffers == 2:
        folds = [(slice(j * cols, (j + 1) * cols), slice(i * rows, (i + 1) * rows))
                 for j in range(math.ceil(sc / cols)) for i in range(math.ceil(k / rows))]
        outs, elapsed, st_reads, s_reads = _pipelined_folds(
            [stationary[ks, cs] for cs, ks in folds], [stream[:, ks] for _, ks in folds],
            rows, cols)
        for (cs, ks), out in zip(folds, outs, strict=True):
            result[:, cs] += out
            res.ofmap_sram_writes += out.size
            res.psum_reads += out.size if ks.start > 0 else 0
        res.filter_sram_reads, res.ifmap_sram_reads = (
            (st_reads, s_reads) if dataflow == "ws" else (s_reads, st_reads))
        res.output = result if dataflow == "ws" else result.T
        res.cycles = elapsed
        return res
    for j in range(math.ceil(sc / cols)):
        cs = slice(j * cols, (j + 1) * cols)
        for i in range(math.ceil(k / rows)):
            ks = slice(i * rows, (i + 1) * rows)
            out, cyc, st_reads, s_reads, writes = _row_reduction_fold(
                stationary[ks, cs], stream[:, ks], rows, cols
            )
            result[:, cs] += out
            elapsed += cyc
            res.ofmap_sram_writes += writes
            res.psum_reads += writes if i > 0 else 0
            if dataflow == "ws":
                res.filter_sram_reads += st_reads
                res.ifmap_sram_reads += s_reads
            else:
                res.ifmap_sram_reads += st_reads
                res.filter_sram_reads += s_reads
    res.output = result if dataflow == "ws" else result.T
    res.cycles = elapsed - 1
    return res
