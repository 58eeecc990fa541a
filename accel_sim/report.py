"""Named, typed, addable results: one `LayerResult` per layer, a `Report` per run."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from accel_sim.energy import COMPONENTS
from accel_sim.engine import LayerRun
from accel_sim.workload import GemmLayer
from crisp.errors import UserError
from crisp.io import check_output_file, write_atomic

_LABELS = ("layer", "kind", "scheme", "mapping")
_ENERGY_FIELDS = tuple((f"energy_{c}_pj", c) for c in COMPONENTS)  # (field, component)
_SHARED = ("pes", "clock_mhz")  # equal in every layer of a run; kept, not summed
_COUNTS = {  # LayerResult field -> engine (component, action)
    "gated_macs": ("mac", "gated"), "mux_selects": ("mux", "select"),
    "pe_reg_accesses": ("pe_reg", "access"),
    "ifmap_sram_reads": ("ifmap_sram", "read"), "ifmap_sram_writes": ("ifmap_sram", "write"),
    "filter_sram_reads": ("filter_sram", "read"), "filter_sram_writes": ("filter_sram", "write"),
    "ofmap_sram_reads": ("ofmap_sram", "read"), "ofmap_sram_writes": ("ofmap_sram", "write"),
    "psum_reads": ("ofmap_sram", "psum_read"), "psum_writes": ("ofmap_sram", "psum_write"),
    "metadata_sram_bytes": ("metadata_sram", "byte"),
    "dram_read_bytes": ("dram", "read_byte"), "dram_write_bytes": ("dram", "write_byte"),
    "dram_metadata_bytes": ("dram", "metadata_byte"), "dram_psum_bytes": ("dram", "psum_byte"),
}


@dataclass(frozen=True)
class LayerResult:
    """One layer's simulation (or a sum of layers: ``a + b``, ``sum(results)``).

    Cycles are array clock cycles; access counts are words (``*_bytes``: bytes; ``psum_*``:
    partial-sum words; ofmap SRAM reads/writes count a partial sum as ``psum_bits/word_bits``
    words); energies pJ. A total has label ``total`` and zero GEMM shape. ``mapping`` is the
    schedule the mapper chose (`accel_sim.mapping.Mapping`), ``compulsory_dram_bytes``
    the layer's traffic floor (`accel_sim.mapper.compulsory_dram_bytes`).

    Attributes:
        layer: the layer's name (dotted module name, or the topology file's name); ``total`` in
            a sum of differently named layers.
        kind: ``conv``, ``depthwise`` or ``linear``.
        scheme: the sparsity scheme of the layer's descriptor (``dense``, ``unstructured``,
            ``channel``, ``nm``, ``block`` or ``hybrid``).
        mapping: the schedule the layer ran with, as text: the fold loops outer to inner and
            the stream tile, e.g. ``j>i>t T/all`` (SCALE-Sim's) or ``t>j>i T/256``.
        P: output pixels per group, ``batch * H_out * W_out`` (0 in a total).
        K: reduction length per group, ``(C_in / groups) * kh * kw`` (0 in a total).
        N: output channels per group, ``C_out / groups`` (0 in a total).
        groups: GEMMs of this shape the layer runs one after another (0 in a total).
        folds: folds executed (array passes of one stationary tile and one stream slice).
        compute_cycles: sum over folds of fill and streaming steps, less one per GEMM
            (SCALE-Sim's 'Total Cycles' on its schedule), in cycles.
        edge_stall_cycles: cycles the array waits at its input edge for activations the
            ifmap SRAM cannot deliver in time (with N:M, M activations per N packed
            positions), in cycles.
        dram_stall_cycles: cycles the array waits for DRAM between folds, in cycles.
        prefetch_cycles: the exposed fetch of the first fold's operands, in cycles.
        writeback_cycles: the exposed write-back of the last fold's outputs, in cycles.
        macs: dense MACs, ``P * K * N * groups``.
        effective_macs: MACs with a non-zero weight (the useful work).
        gated_macs: MAC slots whose zero weight gated the multiplier (0 without zero gating:
            such slots then count as ordinary MACs).
        mux_selects: M:1 multiplexer selects, one per MAC slot of an N:M-compressed layer.
        pe_reg_accesses: PE register accesses: two per MAC slot, ``weight_buffers`` per PE per
            stationary tile loaded.
        ifmap_sram_reads: words the array reads from the ifmap SRAM (every im2col word a fold
            streams or loads).
        ifmap_sram_writes: words written into the ifmap SRAM from DRAM (feature-map words).
        filter_sram_reads: weight words the array reads from the filter SRAM.
        filter_sram_writes: weight words written into the filter SRAM from DRAM (stored
            non-zeros when the weights travel compressed).
        ofmap_sram_reads: ofmap SRAM reads in operand-width words: final outputs read out to
            DRAM and partial sums read back, each partial sum counting ``psum_bits/word_bits``.
        ofmap_sram_writes: ofmap SRAM writes in operand-width words: final outputs and
            partial sums written, each partial sum counting ``psum_bits/word_bits``.
        psum_reads: partial-sum reads of the ofmap SRAM (partial-sum words; part of
            ``ofmap_sram_reads``).
        psum_writes: partial-sum writes of the ofmap SRAM (partial-sum words; part of
            ``ofmap_sram_writes``).
        metadata_sram_bytes: metadata bytes (N:M offsets, bitmaps, block indices) written to
            and read from the filter SRAM.
        dram_read_bytes: bytes read from DRAM: operands, metadata and spilled partial sums.
        dram_write_bytes: bytes written to DRAM: outputs and spilled partial sums.
        dram_metadata_bytes: the metadata bytes among ``dram_read_bytes``.
        dram_psum_bytes: partial-sum bytes spilled to DRAM and read back (both directions,
            part of ``dram_read_bytes`` and ``dram_write_bytes``).
        compulsory_dram_bytes: the layer's DRAM traffic floor whatever the mapping, in bytes
            (0 when not computed).
        energy_mac_pj: energy of active and gated MACs, in pJ.
        energy_mux_pj: energy of multiplexer selects, in pJ.
        energy_reg_pj: energy of PE register accesses, in pJ.
        energy_ifmap_sram_pj: energy of ifmap SRAM reads and writes, in pJ.
        energy_filter_sram_pj: energy of filter SRAM reads and writes, in pJ.
        energy_ofmap_sram_pj: energy of ofmap SRAM reads and writes, in pJ.
        energy_metadata_pj: energy of metadata bytes in the filter SRAM, in pJ.
        energy_dram_pj: energy of DRAM bytes read and written, in pJ.
        energy_leakage_pj: static energy, leakage power times the layer's total cycles, in pJ.
        pes: processing elements of the array, ``rows * cols``.
        clock_mhz: the array's clock frequency in MHz.
    """

    layer: str
    kind: str
    scheme: str
    mapping: str
    P: int
    K: int
    N: int
    groups: int
    folds: int
    compute_cycles: int
    edge_stall_cycles: int
    dram_stall_cycles: int
    prefetch_cycles: int
    writeback_cycles: int
    macs: int
    effective_macs: int
    gated_macs: int
    mux_selects: int
    pe_reg_accesses: int
    ifmap_sram_reads: int
    ifmap_sram_writes: int
    filter_sram_reads: int
    filter_sram_writes: int
    ofmap_sram_reads: int
    ofmap_sram_writes: int
    psum_reads: int
    psum_writes: int
    metadata_sram_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    dram_metadata_bytes: int
    dram_psum_bytes: int
    compulsory_dram_bytes: int
    energy_mac_pj: float
    energy_mux_pj: float
    energy_reg_pj: float
    energy_ifmap_sram_pj: float
    energy_filter_sram_pj: float
    energy_ofmap_sram_pj: float
    energy_metadata_pj: float
    energy_dram_pj: float
    energy_leakage_pj: float
    pes: int
    clock_mhz: float

    @classmethod
    def from_run(
        cls, layer: GemmLayer, scheme: str, run: LayerRun, energy_pj: dict[str, float],
        pes: int, clock_mhz: float,
    ) -> LayerResult:
        """Assemble a result from the engine's run and the priced energy.

        Built without the generated ``__init__``, which sets each of the 44 fields of a frozen
        dataclass through ``object.__setattr__`` (about 17 us a result; a 540-point sweep builds
        22,140): the fields go into the new instance's ``__dict__`` at once, in field order
        (a test checks the result equals the one ``__init__`` builds).
        """
        counts = run.counts
        values = {
            "layer": layer.name, "kind": layer.kind, "scheme": scheme, "mapping": run.mapping,
            "P": layer.P, "K": layer.K, "N": layer.N, "groups": layer.groups,
            "folds": run.folds, "compute_cycles": run.compute_cycles,
            "edge_stall_cycles": run.edge_stall_cycles,
            "dram_stall_cycles": run.dram_stall_cycles, "prefetch_cycles": run.prefetch_cycles,
            "writeback_cycles": run.writeback_cycles, "macs": layer.macs,
            "effective_macs": run.effective_macs,
        }
        for name, key in _COUNTS.items():
            values[name] = counts[key]
        values["compulsory_dram_bytes"] = run.compulsory_dram_bytes
        for name, component in _ENERGY_FIELDS:
            values[name] = energy_pj[component]
        values["pes"], values["clock_mhz"] = pes, clock_mhz
        result = object.__new__(cls)
        result.__dict__.update(values)
        return result

    def __add__(self, other: LayerResult) -> LayerResult:
        if not isinstance(other, LayerResult):
            return NotImplemented
        if (self.pes, self.clock_mhz) != (other.pes, other.clock_mhz):
            raise UserError("cannot add results of different arrays (PEs or clock differ)")
        values = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in _LABELS:
                values[f.name] = a if a == b else "total"
            elif f.name in ("P", "K", "N", "groups"):
                values[f.name] = 0
            else:
                values[f.name] = a if f.name in _SHARED else a + b
        return LayerResult(**values)

    def __radd__(self, other: object) -> LayerResult:
        return self if other == 0 else NotImplemented  # sum() starts from 0

    @property
    def stall_cycles(self) -> int:
        """Edge and DRAM stall cycles."""
        return self.edge_stall_cycles + self.dram_stall_cycles

    @property
    def total_cycles(self) -> int:
        """prefetch + compute + stall + writeback cycles."""
        return (self.prefetch_cycles + self.compute_cycles + self.stall_cycles
                + self.writeback_cycles)

    @property
    def dram_bytes(self) -> int:
        """Bytes read from and written to DRAM, metadata included."""
        return self.dram_read_bytes + self.dram_write_bytes

    @property
    def dram_over_compulsory(self) -> float:
        """DRAM bytes over the compulsory floor (>= 1; 0 when no floor was computed)."""
        return self.dram_bytes / self.compulsory_dram_bytes if self.compulsory_dram_bytes else 0.0

    @property
    def bound(self) -> str:
        """What limits the layer: ``compute`` (compute cycles), ``dram`` (DRAM stall, prefetch
        and write-back cycles) or ``edge`` (input-edge stalls), whichever is largest."""
        dram = self.dram_stall_cycles + self.prefetch_cycles + self.writeback_cycles
        parts = {"compute": self.compute_cycles, "dram": dram, "edge": self.edge_stall_cycles}
        return max(parts, key=parts.get)

    @property
    def energy_total_pj(self) -> float:
        """Energy of all components (pJ)."""
        return sum(getattr(self, name) for name, _ in _ENERGY_FIELDS)

    @property
    def utilization(self) -> float:
        """Useful (non-zero) MACs per PE-cycle of the total time, 0..1."""
        return self.effective_macs / max(1, self.pes * self.total_cycles)

    @property
    def latency_us(self) -> float:
        """Total cycles at the clock frequency (microseconds)."""
        return self.total_cycles / self.clock_mhz

    def as_row(self) -> dict[str, object]:
        """Fields and derived figures as one flat dict."""
        values = vars(self)
        row = {name: values[name] for name in _FIELD_NAMES}  # flat: no deep copy
        for name in ("stall_cycles", "total_cycles", "utilization", "dram_bytes",
                     "dram_over_compulsory", "bound", "energy_total_pj", "latency_us"):
            row[name] = getattr(self, name)
        return row

    def to_frame(self) -> pd.DataFrame:
        """A one-row DataFrame."""
        return pd.DataFrame([self.as_row()])


_FIELD_NAMES = tuple(f.name for f in fields(LayerResult))
"""LayerResult's field names, in order (`LayerResult.as_row` reads them per row)."""


@dataclass(frozen=True)
class Report:
    """One simulation run: a result per layer, in execution order.

    Attributes:
        hardware: the hardware's name.
        layers: the per-layer results.
    """

    hardware: str
    layers: tuple[LayerResult, ...]

    @property
    def totals(self) -> LayerResult:
        """The network total (``sum`` of the layers, labelled ``total``)."""
        return sum(self.layers[1:], self.layers[0])

    @property
    def frame(self) -> pd.DataFrame:
        """One row per layer: `to_frame` with its defaults."""
        return self.to_frame()

    def to_frame(self, totals: bool = False) -> pd.DataFrame:
        """One row per layer (columns with units in their names, see `LayerResult`).

        Only layers by default, so a column's ``sum()`` is the network's; the total is
        `totals`. ``totals=True`` appends it as a last row labelled ``total`` and adds a
        bool column ``is_total`` (True on that row only), for printing a table with its total.
        """
        frame = pd.DataFrame([r.as_row() for r in self.layers])
        if not totals:
            return frame
        frame = pd.concat([frame, pd.DataFrame([self.totals.as_row()])], ignore_index=True)
        frame["is_total"] = frame.index == len(self.layers)
        return frame


SUMMARY_COLUMNS = ("layer", "scheme", "mapping", "folds", "compute_cycles", "stall_cycles",
                   "total_cycles", "utilization", "dram_bytes", "dram_over_compulsory", "bound",
                   "energy_total_pj", "latency_us")


def summary(frame: pd.DataFrame, columns: tuple[str, ...] = SUMMARY_COLUMNS) -> str:
    """A readable text table of the main columns."""
    shown = frame[[c for c in columns if c in frame.columns]].copy()
    for col in shown.columns:
        if col == "utilization":
            shown[col] = shown[col].map("{:.1%}".format)
        elif col == "dram_over_compulsory":
            shown[col] = shown[col].map("{:.2f}x".format)
        elif col.endswith(("_pj", "_us")) or shown[col].dtype.kind == "f":
            shown[col] = shown[col].map("{:,.4g}".format)
        elif shown[col].dtype.kind == "i":
            shown[col] = shown[col].map("{:,}".format)
    return shown.to_string(index=False)


#: The table formats `write_frame` writes, by suffix.
FRAME_SUFFIXES = (".csv", ".parquet")


def write_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV (``.csv``) or Parquet (``.parquet``), atomically.

    Raises:
        UserError: any other extension, or a path that cannot be written
            (`crisp.io.check_output_file`, which the command lines call before the work).
    """
    path = check_output_file(path, FRAME_SUFFIXES)
    if path.suffix == ".csv":
        return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
