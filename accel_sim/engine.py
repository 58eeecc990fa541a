"""The engine: one Numba kernel walks any fold plan on a double-buffered timeline.

The engine is the cost model of one mapping: it never chooses anything (that is
`accel_sim.mapper`'s job); it walks the plan it is given.

Timeline of a layer (cycles), folds ``f = 0 .. F-1`` in the plan's order:

- ``prefetch_cycles``: fold 0's operands come from DRAM before anything starts (exposed, like
  SCALE-Sim's 'incl. prefetch' term): ``ceil(fetch_0 / bandwidth)``.
- fold f is busy ``fill_f + T_f + edge_stall_f`` cycles; its ``fill_f + T_f`` are compute cycles
  (``fill_f = 0`` when the fold continues the previous fold's stream).
- while fold f computes, the DRAM interface (one shared bus, reads and writes) carries fold f+1's
  operands into the idle buffer halves and writes back what fold f-1 left (outputs, spilled
  partial sums): ``dram_f = ceil((fetch_{f+1} + write_{f-1}) / bandwidth)``. If that takes longer
  than fold f is busy, the array stalls: ``dram_stall_f = max(0, dram_f - busy_f)``.
- ``writeback_cycles``: the last fold's write-back, exposed at the end.

``compute_cycles = sum_f (fill_f + T_f) - gemms``: SCALE-Sim's 'Total Cycles' (its count is one
less than the cycles elapsed, per GEMM). ``total_cycles = prefetch + compute + stalls + writeback``.
Layers run one after another; each starts and ends in DRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from accel_sim import timeline
from accel_sim.hardware import HardwareSpec
from accel_sim.mapping import COUNT_NAMES, FoldPlan

Counts = dict[tuple[str, str], int]
"""Named action counts ``{(component, action): count}`` (see `action_counts`)."""


@njit(cache=True)
def walk(
    fill: np.ndarray,
    stream: np.ndarray,
    edge_stall: np.ndarray,
    fetch_bytes: np.ndarray,
    write_bytes: np.ndarray,
    repeat: np.ndarray,
    bandwidth: float,
) -> tuple[int, int, int, int, int]:
    """Walk the folds' timeline; returns (compute + gemms, edge stall, DRAM stall, prefetch,
    write-back), all in cycles.

    A maximal run of folds with ``repeat = w > 1`` is one block repeated w times in place: its
    inner folds cost w times their one-copy cost, and its first and last folds see the fold
    before and after the run on their first and last copy and the block's own last and first
    fold on the copies between (`accel_sim.timeline`).
    """
    st = timeline.start()
    for k in range(stream.shape[0]):
        st = timeline.step(st, fill[k], stream[k], edge_stall[k], fetch_bytes[k], write_bytes[k],
                           repeat[k], bandwidth)
    return timeline.finish(st, bandwidth)


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
        mapping: the schedule the plan followed (`accel_sim.mapping.Mapping` as text).
        compulsory_dram_bytes: the layer's DRAM traffic floor (bytes), 0 when not computed.
    """

    folds: int
    compute_cycles: int
    edge_stall_cycles: int
    dram_stall_cycles: int
    prefetch_cycles: int
    writeback_cycles: int
    effective_macs: int
    counts: Counts
    mapping: str = ""
    compulsory_dram_bytes: int = 0

    @property
    def total_cycles(self) -> int:
        """prefetch + compute + stalls + writeback (cycles)."""
        return (self.prefetch_cycles + self.compute_cycles + self.edge_stall_cycles
                + self.dram_stall_cycles + self.writeback_cycles)


def action_counts(
    summed: dict[str, int], effective_macs: int, nm: tuple[int, int] | None, hw: HardwareSpec
) -> Counts:
    """Named action counts from a plan's summed counts (``nm``: the packing's N:M or None).

    MAC slots whose weight is zero are gated when the hardware has zero gating (they cost
    ``gated_mac_pj``), else they are ordinary MACs. Every slot of an N:M-compressed layer makes
    one multiplexer select. Ofmap SRAM reads and writes are operand-width word accesses; a
    partial-sum access counts ``psum_bits / word_bits`` of them (``psum_read`` and
    ``psum_write`` count the partial-sum accesses themselves, a subset).
    """
    slots = summed["mac_slots"]
    zeros = slots - effective_macs
    gate = hw.sparse.zero_gating
    ratio = hw.array.psum_ratio
    return {
        ("mac", "active"): effective_macs + (0 if gate else zeros),
        ("mac", "gated"): zeros if gate else 0,
        ("mux", "select"): slots if nm else 0,
        ("pe_reg", "access"): summed["pe_reg_accesses"],
        ("ifmap_sram", "read"): summed["ifmap_sram_reads"],
        ("ifmap_sram", "write"): summed["ifmap_sram_writes"],
        ("filter_sram", "read"): summed["filter_sram_reads"],
        ("filter_sram", "write"): summed["filter_sram_writes"],
        ("ofmap_sram", "read"): summed["ofmap_sram_reads"] + ratio * summed["psum_sram_reads"],
        ("ofmap_sram", "write"): summed["ofmap_sram_writes"] + ratio * summed["psum_sram_writes"],
        ("ofmap_sram", "psum_read"): summed["psum_sram_reads"],
        ("ofmap_sram", "psum_write"): summed["psum_sram_writes"],
        ("metadata_sram", "byte"): summed["metadata_sram_bytes"],
        ("dram", "read_byte"): summed["dram_read_bytes"],
        ("dram", "write_byte"): summed["dram_write_bytes"],
        ("dram", "metadata_byte"): summed["dram_metadata_bytes"],
        ("dram", "psum_byte"): summed["dram_psum_bytes"],
    }


def run_plan(plan: FoldPlan, hw: HardwareSpec) -> LayerRun:
    """Walk ``plan`` on ``hw``'s timeline (see module docstring)."""
    cycles = walk(plan.fill, plan.stream, plan.edge_stall, plan.fetch_bytes, plan.write_bytes,
                  plan.repeat, float(hw.memory.dram_bytes_per_cycle))
    return layer_run(np.array([*cycles, plan.folds, plan.gemms]), plan.counts,
                     plan.effective_macs, plan.nm, hw, str(plan.mapping))


def layer_run(cycles: np.ndarray, counts: np.ndarray, effective_macs: int,
              nm: tuple[int, int] | None, hw: HardwareSpec, mapping: str,
              compulsory_dram_bytes: int = 0) -> LayerRun:
    """A LayerRun from a walk's results: ``cycles`` int [7] (compute + gemms, edge stall, DRAM
    stall, prefetch, write-back, folds, gemms) and ``counts`` int [len(COUNT_NAMES)]."""
    compute, edge, dram, prefetch, writeback, folds, gemms = cycles.tolist()
    summed = dict(zip(COUNT_NAMES, counts.tolist(), strict=True))
    return LayerRun(
        folds=folds, compute_cycles=max(0, compute - gemms), edge_stall_cycles=edge,
        dram_stall_cycles=dram, prefetch_cycles=prefetch, writeback_cycles=writeback,
        effective_macs=effective_macs, counts=action_counts(summed, effective_macs, nm, hw),
        mapping=mapping, compulsory_dram_bytes=compulsory_dram_bytes,
    )
