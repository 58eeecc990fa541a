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


def run_reference(
    a: np.ndarray, w: np.ndarray, rows: int, cols: int, dataflow: str
) -> ReferenceResult:
    """Simulate ``O = A x W^T`` (A ``[P, K]``, W ``[N, K]``) cycle by cycle on an R x C array."""
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
