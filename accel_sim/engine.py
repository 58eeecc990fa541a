"""The engine: one Numba kernel walks any fold plan on a double-buffered timeline.

Timeline of a layer (cycles), folds ``f = 0 .. F-1`` in the plan's order:

- ``prefetch_cycles``: fold 0's operands come from DRAM before anything starts (exposed, like
  SCALE-Sim's 'incl. prefetch' term): ``ceil(fetch_0 / bandwidth)``.
- fold f is busy ``fill + T_f + edge_stall_f`` cycles; its ``fill + T_f`` are compute cycles.
- while fold f computes, the DRAM interface (one shared bus, reads and writes) carries fold f+1's
  operands into the idle buffer halves and writes back what fold f-1 left (outputs, spilled
  partial sums): ``dram_f = ceil((fetch_{f+1} + write_{f-1}) / bandwidth)``. If that takes longer
  than fold f is busy, the array stalls: ``dram_stall_f = max(0, dram_f - busy_f)``.
- ``writeback_cycles``: the last fold's write-back, exposed at the end.

``compute_cycles = sum_f (fill + T_f) - gemms``: SCALE-Sim's 'Total Cycles' (its count is one
less than the cycles elapsed, per GEMM). ``total_cycles = prefetch + compute + stalls + writeback``.
Layers run one after another; each starts and ends in DRAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from accel_sim.hardware import HardwareSpec
from accel_sim.mapping import COUNT_NAMES, FoldPlan, plan_folds
from accel_sim.sparsity import DENSE, LayerSparsity
from accel_sim.workload import GemmLayer

Counts = dict[tuple[str, str], int]
"""Named action counts ``{(component, action): count}`` (see :func:`action_counts`)."""


@njit(cache=True)
def _walk(
    fill: int,
    stream: np.ndarray,
    edge_stall: np.ndarray,
    fetch_bytes: np.ndarray,
    write_bytes: np.ndarray,
    bandwidth: float,
    counts: np.ndarray,
) -> tuple[int, int, int, int, int, np.ndarray]:
    """Walk the folds; returns (compute + gemms, edge stall, dram stall, prefetch, writeback,
    summed counts)."""
    n = stream.shape[0]
    compute = 0
    edge = 0
    dram = 0
    totals = np.zeros(counts.shape[1], np.int64)
    for f in range(n):
        busy = fill + stream[f] + edge_stall[f]
        compute += fill + stream[f]
        edge += edge_stall[f]
        traffic = 0
        if f + 1 < n:
            traffic += fetch_bytes[f + 1]
        if f > 0:
            traffic += write_bytes[f - 1]
        wait = math.ceil(traffic / bandwidth)
        if wait > busy:
            dram += wait - busy
        for a in range(counts.shape[1]):
            totals[a] += counts[f, a]
    prefetch = 0
    writeback = 0
    if n > 0:
        prefetch = math.ceil(fetch_bytes[0] / bandwidth)
        writeback = math.ceil(write_bytes[n - 1] / bandwidth)
    return compute, edge, dram, prefetch, writeback, totals


@dataclass(frozen=True)
class LayerRun:
    """What the engine measured for one layer (cycles and named action counts).

    Attributes:
        folds: folds executed.
        compute_cycles: SCALE-Sim-compatible compute cycles (see module docstring).
        edge_stall_cycles: cycles lost at the array's input edge (N:M activation bandwidth).
        dram_stall_cycles: cycles lost waiting for DRAM between folds.
        prefetch_cycles: exposed fetch of the first fold's operands.
        writeback_cycles: exposed write-back of the last fold's outputs.
        effective_macs: MACs with a non-zero weight.
        counts: ``{(component, action): count}`` (words, bytes or MACs as the action says).
    """

    folds: int
    compute_cycles: int
    edge_stall_cycles: int
    dram_stall_cycles: int
    prefetch_cycles: int
    writeback_cycles: int
    effective_macs: int
    counts: Counts

    @property
    def total_cycles(self) -> int:
        """prefetch + compute + stalls + writeback (cycles)."""
        return (self.prefetch_cycles + self.compute_cycles + self.edge_stall_cycles
                + self.dram_stall_cycles + self.writeback_cycles)


def action_counts(summed: dict[str, int], plan: FoldPlan, hw: HardwareSpec) -> Counts:
    """Named action counts from a plan's summed per-fold counts.

    MAC slots whose weight is zero are gated when the hardware has zero gating (they cost
    ``gated_mac_pj``), else they are ordinary MACs. Every slot of an N:M-compressed layer makes
    one multiplexer select.
    """
    slots = summed["mac_slots"]
    zeros = slots - plan.effective_macs
    gate = hw.sparse.zero_gating
    return {
        ("mac", "active"): plan.effective_macs + (0 if gate else zeros),
        ("mac", "gated"): zeros if gate else 0,
        ("mux", "select"): slots if plan.nm else 0,
        ("pe_reg", "access"): summed["pe_reg_accesses"],
        ("ifmap_sram", "read"): summed["ifmap_sram_reads"],
        ("ifmap_sram", "write"): summed["ifmap_sram_writes"],
        ("filter_sram", "read"): summed["filter_sram_reads"],
        ("filter_sram", "write"): summed["filter_sram_writes"],
        ("ofmap_sram", "read"): summed["ofmap_sram_reads"],
        ("ofmap_sram", "write"): summed["ofmap_sram_writes"],
        ("ofmap_sram", "psum_read"): summed["psum_reads"],
        ("metadata_sram", "byte"): summed["metadata_sram_bytes"],
        ("dram", "read_byte"): summed["dram_read_bytes"],
        ("dram", "write_byte"): summed["dram_write_bytes"],
        ("dram", "metadata_byte"): summed["dram_metadata_bytes"],
    }


def run_plan(plan: FoldPlan, hw: HardwareSpec) -> LayerRun:
    """Walk ``plan`` on ``hw``'s timeline (see module docstring)."""
    compute, edge, dram, prefetch, writeback, totals = _walk(
        plan.fill, plan.stream, plan.edge_stall, plan.fetch_bytes, plan.write_bytes,
        float(hw.memory.dram_bytes_per_cycle), plan.counts,
    )
    summed = dict(zip(COUNT_NAMES, (int(v) for v in totals), strict=True))
    return LayerRun(
        folds=plan.folds, compute_cycles=max(0, int(compute) - plan.gemms),
        edge_stall_cycles=int(edge), dram_stall_cycles=int(dram),
        prefetch_cycles=int(prefetch), writeback_cycles=int(writeback),
        effective_macs=plan.effective_macs,
        counts=action_counts(summed, plan, hw),
    )


def run_layer(layer: GemmLayer, hw: HardwareSpec, sparsity: LayerSparsity = DENSE) -> LayerRun:
    """Map and run one layer: :func:`~accel_sim.mapping.plan_folds` then :func:`run_plan`."""
    return run_plan(plan_folds(layer, hw, sparsity), hw)
