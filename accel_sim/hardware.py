"""The accelerator as one validated, frozen spec: array, memory, sparse support and energy table.

Every source of a hardware description goes through `build_hardware`, the one place that
validates: a TOML file (`load_hardware`), a shipped preset (``accel_sim/presets/*.toml``),
a SCALE-Sim ``.cfg`` file and CLI flags (`with_overrides`). The engine only ever sees a
`HardwareSpec`, never a dict.

TOML layout (every section optional; omitted fields take the defaults below)::

    name = "my-array"
    [array]   rows, cols, dataflow ("ws" | "os" | "is"), word_bits (8 | 16 | 32), clock_mhz,
              psum_bits (accumulator width, default 32), weight_buffers (1 | 2, default 1)
    [memory]  ifmap_sram_kib, filter_sram_kib, ofmap_sram_kib, dram_bytes_per_cycle,
              ifmap_words_per_cycle
    [sparse]  nm ("2:4" or "none"), block_skipping, zero_gating, bitmap_weights
    [energy]  all fields of EnergyTable (a partial table is an error: name the missing field)
"""

from __future__ import annotations

import configparser
import functools
import math
import tomllib
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from accel_sim.workload import MAX_ARRAY_SIDE
from crisp.errors import UserError
from crisp.io import read_text
from crisp.ranges import Range

DATAFLOWS = ("ws", "os", "is")
WORD_BITS = (8, 16, 32)

# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, pJ.
# MAC = multiply + accumulate. int8 products are accumulated in 32 bits (int8 mult + int32 add);
# 16-bit words are taken as fp16 and 32-bit words as fp32 (his table has no int16).
_MAC_PJ = {8: 0.2 + 0.1, 16: 1.1 + 0.4, 32: 3.7 + 0.9}
# A gated MAC keeps its clock and operand registers busy: Accelergy's sparse-tensor-core example
# charges 0.018 of 0.561 pJ (3.2 %) for a gated MAC.
_GATED_FRACTION = 0.018 / 0.561
# SRAM 64-bit read: 10 pJ at 8 KB, 20 pJ at 32 KB, 100 pJ at 1 MB (Horowitz).
_SRAM_POINTS_KIB = (8.0, 32.0, 1024.0)
_SRAM_POINTS_PJ = (10.0, 20.0, 100.0)
# DRAM: 1.3 to 2.6 nJ per 64-bit access (Horowitz); we take the low end, 1.3 nJ / 8 bytes.
_DRAM_PJ_PER_BYTE = 1300.0 / 8
# PE register access: Accelergy's int8 local register read, 0.072 pJ, scaled by word width.
_REG_PJ_INT8 = 0.072
# An M:1 multiplexer select: no published figure in our sources; we charge one int8 add
# (0.03 pJ, Horowitz) per select, scaled by word width. An assumption, not a measurement.
_MUX_PJ_INT8 = 0.03
# Leakage: an assumption (no figure in our sources), 0.01 mW per PE plus 0.02 mW per KiB of SRAM.
_LEAK_MW_PER_PE = 0.01
_LEAK_MW_PER_KIB = 0.02


@dataclass(frozen=True)
class ArraySpec:
    """The systolic array.

    Attributes:
        rows: PE rows R.
        cols: PE columns C.
        dataflow: ``ws`` (weight stationary), ``os`` (output stationary) or ``is`` (input
            stationary).
        word_bits: operand width in bits (8, 16 or 32).
        clock_mhz: clock frequency in MHz (latency = cycles / clock).
        psum_bits: width of a partial sum (the accumulator) in bits, at least ``word_bits`` and a
            multiple of 8; partial sums kept in the ofmap SRAM or spilled to DRAM move at this
            width, final outputs at ``word_bits``.
        weight_buffers: stationary registers per PE, 1 or 2. With 2 (a shadow register, as in
            TPU-class weight-stationary arrays) the next fold's stationary tile shifts in while
            the current fold streams, and only the part of its load the stream does not cover
            is exposed (`accel_sim.mapping`); each stationary value is then written twice
            (shadow, then working register). The extra register's area is not modelled. No
            effect on the OS dataflow, whose stationary operand is the output.
    """

    rows: int = 32
    cols: int = 32
    dataflow: str = "ws"
    word_bits: int = 8
    clock_mhz: float = 1000.0
    psum_bits: int = 32
    weight_buffers: int = 1

    @property
    def word_bytes(self) -> int:
        """Bytes per operand word."""
        return self.word_bits // 8

    @property
    def psum_ratio(self) -> int:
        """Operand-width words one partial-sum access moves (``psum_bits / word_bits``, rounded
        up)."""
        return -(-self.psum_bits // self.word_bits)


@dataclass(frozen=True)
class MemorySpec:
    """The three double-buffered SRAM scratchpads and the DRAM interface.

    Attributes:
        ifmap_sram_kib: ifmap (activation) SRAM size in KiB, both buffer halves together.
        filter_sram_kib: filter (weight) SRAM size in KiB, both halves; metadata lives here too.
        ofmap_sram_kib: ofmap (output / partial sum) SRAM size in KiB, both halves.
        dram_bytes_per_cycle: DRAM bandwidth in bytes per cycle, shared by reads and write-backs
            (``inf`` = ideal memory).
        ifmap_words_per_cycle: words per cycle the ifmap SRAM can deliver to the array's input
            edge; ``None`` = what the array needs (R, times M/N with N:M support).
    """

    ifmap_sram_kib: float = 64.0
    filter_sram_kib: float = 64.0
    ofmap_sram_kib: float = 64.0
    dram_bytes_per_cycle: float = 16.0
    ifmap_words_per_cycle: int | None = None


@dataclass(frozen=True)
class SparseSupport:
    """The sparse features the hardware has (the workload carries the sparsity itself).

    Attributes:
        nm: supported N:M pattern ``(N, M)`` of the per-PE M:1 multiplexers, or None.
        block_skipping: the scheduler skips all-zero weight blocks.
        zero_gating: a zero weight gates its multiplier (energy only, no cycles).
        bitmap_weights: weights of unstructured layers travel bitmap-compressed from DRAM.
    """

    nm: tuple[int, int] | None = None
    block_skipping: bool = False
    zero_gating: bool = False
    bitmap_weights: bool = False


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action, in pJ (per word for SRAM, per byte for DRAM and metadata), and leakage.

    Attributes:
        mac_pj: one active multiply-accumulate.
        gated_mac_pj: one MAC slot whose zero weight gated the multiplier.
        mux_pj: one M:1 multiplexer select (per MAC slot on an N:M-compressed layer).
        reg_pj: one PE register access (operand forwarding, partial sum, weight load).
        ifmap_sram_read_pj, ifmap_sram_write_pj: one ifmap SRAM word access.
        filter_sram_read_pj, filter_sram_write_pj: one filter SRAM word access.
        ofmap_sram_read_pj, ofmap_sram_write_pj: one ofmap SRAM word access.
        metadata_pj_per_byte: one byte of metadata (N:M offsets, block indices, bitmaps) read from
            or written to SRAM.
        dram_pj_per_byte: one byte moved to or from DRAM (data or metadata).
        leakage_mw: static power of the whole accelerator in mW, charged for every cycle.
    """

    mac_pj: float
    gated_mac_pj: float
    mux_pj: float
    reg_pj: float
    ifmap_sram_read_pj: float
    ifmap_sram_write_pj: float
    filter_sram_read_pj: float
    filter_sram_write_pj: float
    ofmap_sram_read_pj: float
    ofmap_sram_write_pj: float
    metadata_pj_per_byte: float
    dram_pj_per_byte: float
    leakage_mw: float


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator: array, memory, sparse support and (optionally) a user energy table.

    Attributes:
        name: label used in reports.
        array, memory, sparse: the specs above.
        energy_override: a user-supplied table; None = `default_energy` for this array.
    """

    name: str = "custom"
    array: ArraySpec = ArraySpec()
    memory: MemorySpec = MemorySpec()
    sparse: SparseSupport = SparseSupport()
    energy_override: EnergyTable | None = None

    @functools.cached_property
    def energy(self) -> EnergyTable:
        """The energy table in force: the user's, or the defaults for this array and memory."""
        return self.energy_override or default_energy(self.array, self.memory)

    @property
    def edge_words_per_cycle(self) -> int:
        """Activations per cycle the ifmap SRAM delivers to the array's input edge (words)."""
        if self.memory.ifmap_words_per_cycle is not None:
            return self.memory.ifmap_words_per_cycle
        n, m = self.sparse.nm or (1, 1)
        return math.ceil(self.array.rows * m / n)


_SIDE = Range(int, 1, MAX_ARRAY_SIDE, unit="PEs")
_KIB = Range(float, 0, 2**24, low_open=True, unit="KiB")
_PJ = Range(float, 0, 1e9, unit="pJ")
SCHEMA: dict[str, dict[str, Range]] = {
    "array": {"rows": _SIDE, "cols": _SIDE, "word_bits": Range(int, 8, 32, unit="bits"),
              "clock_mhz": Range(float, 0, 1e6, low_open=True, unit="MHz"),
              "psum_bits": Range(int, 8, 64, unit="bits"),
              "weight_buffers": Range(int, 1, 2, unit="registers per PE")},
    "memory": {"ifmap_sram_kib": _KIB, "filter_sram_kib": _KIB, "ofmap_sram_kib": _KIB,
               "dram_bytes_per_cycle": Range(float, 2**-12, 2**20, infinite=True,
                                             unit="bytes/cycle"),
               "ifmap_words_per_cycle": Range(int, 1, 2**20, unit="words/cycle")},
    "energy": {f.name: Range(float, 0, 1e6, unit="mW") if f.name == "leakage_mw" else _PJ
               for f in fields(EnergyTable)},
}
"""The allowed range of every numeric key of a hardware description, by section and key: what
`build_hardware` enforces and what the docs' key reference lists. Finite everywhere but the
DRAM bandwidth (``inf`` = ideal memory); bounds keep every count the engine makes below 2**62
(array sides up to `accel_sim.workload.MAX_ARRAY_SIDE`, bandwidth at least 2**-12 byte per
cycle: see `accel_sim.workload.MAX_MACS`), and the others are far beyond any real design
(16 GiB of SRAM, 1 THz, 1 uJ per action). ``word_bits`` must also be one of 8, 16, 32 and
``psum_bits`` a multiple of 8 of at least ``word_bits``; ``weight_buffers`` is 1 or 2."""


def sram_pj_per_word(size_kib: float, word_bits: int) -> float:
    """SRAM access energy per word (pJ), interpolated from Horowitz' 64-bit read figures.

    Linear in log2(size) between 8 KiB (10 pJ), 32 KiB (20 pJ) and 1 MiB (100 pJ), clamped
    outside that range, then scaled by ``word_bits / 64``.
    """
    pj64 = float(np.interp(math.log2(size_kib), np.log2(_SRAM_POINTS_KIB), _SRAM_POINTS_PJ))
    return pj64 * word_bits / 64


def default_energy(array: ArraySpec, memory: MemorySpec) -> EnergyTable:
    """The default energy table for this word width and these SRAM sizes (see module constants)."""
    scale = array.word_bits / 8
    mac = _MAC_PJ[array.word_bits]
    ifmap = sram_pj_per_word(memory.ifmap_sram_kib, array.word_bits)
    filt = sram_pj_per_word(memory.filter_sram_kib, array.word_bits)
    ofmap = sram_pj_per_word(memory.ofmap_sram_kib, array.word_bits)
    kib = memory.ifmap_sram_kib + memory.filter_sram_kib + memory.ofmap_sram_kib
    return EnergyTable(
        mac_pj=mac, gated_mac_pj=mac * _GATED_FRACTION, mux_pj=_MUX_PJ_INT8 * scale,
        reg_pj=_REG_PJ_INT8 * scale,
        ifmap_sram_read_pj=ifmap, ifmap_sram_write_pj=ifmap,
        filter_sram_read_pj=filt, filter_sram_write_pj=filt,
        ofmap_sram_read_pj=ofmap, ofmap_sram_write_pj=ofmap,
        metadata_pj_per_byte=sram_pj_per_word(memory.filter_sram_kib, 8),
        dram_pj_per_byte=_DRAM_PJ_PER_BYTE,
        leakage_mw=_LEAK_MW_PER_PE * array.rows * array.cols + _LEAK_MW_PER_KIB * kib,
    )


def parse_nm(text: str | None) -> tuple[int, int] | None:
    """``"2:4"`` -> (2, 4); ``"none"``, ``""`` or None -> None.

    Raises:
        UserError: not ``N:M`` with ``1 <= N < M``, M a power of two in 2..16.
    """
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    parts = str(text).split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"N:M pattern {text!r} is not of the form N:M (e.g. 2:4) or 'none'")
    n, m = int(parts[0]), int(parts[1])
    if m not in (2, 4, 8, 16) or not 1 <= n < m:
        raise UserError(f"N:M pattern {text!r}: need 1 <= N < M with M in 2, 4, 8, 16")
    return n, m


def parse_array(text: str) -> tuple[int, int]:
    """``"32x32"`` -> (32, 32).

    Raises:
        UserError: not ``RxC`` with integers in 1..`accel_sim.workload.MAX_ARRAY_SIDE`.
    """
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UserError(f"array {text!r} is not ROWSxCOLS (e.g. 32x32)")
    rows, cols = (_SIDE.check(int(p), f"array {text!r}: side") for p in parts)
    return rows, cols


def _number(section: str, key: str, value: Any) -> Any:
    """``value`` checked against ``SCHEMA[section][key]`` (a UserError naming the key if not)."""
    return SCHEMA[section][key].check(value, f"[{section}] {key}")


def _flag(section: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"[{section}] {key} = {value!r} must be true or false")
    return value


def _check_keys(section: str, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UserError(f"[{section}] unknown field {unknown[0]!r}: allowed {', '.join(allowed)}")


def _build_array(data: dict[str, Any]) -> ArraySpec:
    names = tuple(f.name for f in fields(ArraySpec))
    _check_keys("array", data, names)
    d = ArraySpec()
    dataflow = str(data.get("dataflow", d.dataflow)).lower()
    if dataflow not in DATAFLOWS:
        raise UserError(f"[array] dataflow = {dataflow!r}: allowed {', '.join(DATAFLOWS)}")
    word_bits = _number("array", "word_bits", data.get("word_bits", d.word_bits))
    if word_bits not in WORD_BITS:
        raise UserError(f"[array] word_bits = {word_bits}: allowed 8, 16, 32")
    psum_bits = _number("array", "psum_bits", data.get("psum_bits", d.psum_bits))
    if psum_bits < word_bits or psum_bits % 8:
        raise UserError(f"[array] psum_bits = {psum_bits}: allowed a multiple of 8 that is at "
                        f"least word_bits ({word_bits})")
    return ArraySpec(
        rows=_number("array", "rows", data.get("rows", d.rows)),
        cols=_number("array", "cols", data.get("cols", d.cols)),
        dataflow=dataflow, word_bits=word_bits,
        clock_mhz=_number("array", "clock_mhz", data.get("clock_mhz", d.clock_mhz)),
        psum_bits=psum_bits,
        weight_buffers=_number("array", "weight_buffers",
                               data.get("weight_buffers", d.weight_buffers)),
    )


def _build_memory(data: dict[str, Any]) -> MemorySpec:
    _check_keys("memory", data, tuple(f.name for f in fields(MemorySpec)))
    d = MemorySpec()
    edge = data.get("ifmap_words_per_cycle")
    return MemorySpec(
        **{k: _number("memory", k, data.get(k, getattr(d, k)))
           for k in ("ifmap_sram_kib", "filter_sram_kib", "ofmap_sram_kib",
                     "dram_bytes_per_cycle")},
        ifmap_words_per_cycle=None if edge is None
        else _number("memory", "ifmap_words_per_cycle", edge),
    )


def _build_sparse(data: dict[str, Any]) -> SparseSupport:
    _check_keys("sparse", data, tuple(f.name for f in fields(SparseSupport)))
    return SparseSupport(
        nm=parse_nm(data.get("nm")),
        **{k: _flag("sparse", k, data.get(k, False))
           for k in ("block_skipping", "zero_gating", "bitmap_weights")},
    )


def _build_energy(data: dict[str, Any]) -> EnergyTable:
    names = tuple(f.name for f in fields(EnergyTable))
    _check_keys("energy", data, names)
    missing = [n for n in names if n not in data]
    if missing:
        raise UserError(
            f"[energy] table is missing field {missing[0]!r} (all of: {', '.join(names)})"
        )
    return EnergyTable(**{n: _number("energy", n, data[n]) for n in names})


def build_hardware(data: dict[str, Any], origin: str = "<dict>") -> HardwareSpec:
    """Validate a parsed description (TOML layout, see module docstring) into a HardwareSpec.

    Args:
        data: ``{"name": ..., "array": {...}, "memory": {...}, "sparse": {...}, "energy": {...}}``.
        origin: where it came from, for the default name.

    Raises:
        UserError: an unknown section or field, dims < 1, an unknown dataflow, a bandwidth <= 0,
            a bad N:M pattern, an energy table missing a field, ...
    """
    _check_keys("top level", data, ("name", "array", "memory", "sparse", "energy"))
    for section in ("array", "memory", "sparse", "energy"):
        if not isinstance(data.get(section, {}), dict):
            raise UserError(f"[{section}] must be a table, got {data[section]!r}")
    array = _build_array(data.get("array", {}))
    return HardwareSpec(
        name=str(data.get("name", Path(origin).stem)),
        array=array,
        memory=_build_memory(data.get("memory", {})),
        sparse=_build_sparse(data.get("sparse", {})),
        energy_override=_build_energy(data["energy"]) if "energy" in data else None,
    )


def describe(hw: HardwareSpec) -> dict[str, Any]:
    """The spec back in the TOML layout (inverse of `build_hardware`)."""
    out: dict[str, Any] = {
        "name": hw.name,
        "array": {f.name: getattr(hw.array, f.name) for f in fields(ArraySpec)},
        "memory": {f.name: getattr(hw.memory, f.name) for f in fields(MemorySpec)
                   if getattr(hw.memory, f.name) is not None},
        "sparse": {f.name: getattr(hw.sparse, f.name) for f in fields(SparseSupport)},
    }
    out["sparse"]["nm"] = "none" if hw.sparse.nm is None else "{}:{}".format(*hw.sparse.nm)
    if hw.energy_override is not None:
        out["energy"] = {f.name: getattr(hw.energy_override, f.name) for f in fields(EnergyTable)}
    return out


@functools.cache
def presets() -> tuple[str, ...]:
    """Names of the shipped presets (``accel_sim/presets/*.toml``; listed once a process: a
    sweep asks for every point it makes)."""
    root = resources.files("accel_sim") / "presets"
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml")))


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{origin}: not valid TOML: {err}") from None


def _read_scalesim_cfg(path: Path) -> dict[str, Any]:
    """A SCALE-Sim ``.cfg`` in the TOML layout (its Bandwidth is in words per cycle)."""
    cfg = configparser.ConfigParser()
    try:
        cfg.read_string(read_text(path, "hardware file"), str(path))
    except configparser.Error as err:
        raise UserError(f"{path}: not a valid SCALE-Sim config: {err}") from None
    if not cfg.has_section("architecture_presets"):
        raise UserError(f"{path}: SCALE-Sim config has no [architecture_presets] section")
    arch = cfg["architecture_presets"]
    keys = {"ArrayHeight": "rows", "ArrayWidth": "cols", "IfmapSramSzkB": "ifmap_sram_kib",
            "FilterSramSzkB": "filter_sram_kib", "OfmapSramSzkB": "ofmap_sram_kib"}
    values: dict[str, Any] = {}
    for key, name in keys.items():
        if key not in arch:
            raise UserError(f"{path}: [architecture_presets] has no {key}")
        try:
            values[name] = float(arch[key])
        except ValueError:
            raise UserError(f"{path}: {key} = {arch[key]!r} is not a number") from None
    array = {"rows": values.pop("rows"), "cols": values.pop("cols"),
             "dataflow": arch.get("Dataflow", "ws").strip().lower()}
    if "Bandwidth" in arch:
        try:
            values["dram_bytes_per_cycle"] = float(arch["Bandwidth"])  # 1-byte words
        except ValueError:
            raise UserError(f"{path}: Bandwidth = {arch['Bandwidth']!r} is not a number") from None
    name = cfg.get("general", "run_name", fallback=path.stem).strip()
    return {"name": name, "array": array, "memory": values}


def load_hardware(name_or_path: str | Path) -> HardwareSpec:
    """A HardwareSpec from a preset name (``edge-32x32``), a ``.toml`` file or a SCALE-Sim ``.cfg``.

    Raises:
        UserError: an unknown preset (lists them), a missing or malformed file, or any
            validation error of `build_hardware`.
    """
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".toml", ".cfg"):
        data = (_read_scalesim_cfg(path) if path.suffix == ".cfg"
                else _read_toml(read_text(path, "hardware file"), text))
        try:
            return build_hardware(data, text)
        except UserError as err:
            raise UserError(f"{path}: {err}") from None
    if text not in presets():
        raise UserError(
            f"unknown hardware {text!r}: allowed a .toml or .cfg file or a preset "
            f"({', '.join(presets())})"
        )
    preset = resources.files("accel_sim") / "presets" / f"{text}.toml"
    return build_hardware(_read_toml(preset.read_text(), text), text)


def load_energy(path: str | Path) -> EnergyTable:
    """An energy table from a TOML file with an ``[energy]`` section holding every field.

    Raises:
        UserError: missing file, no ``[energy]`` section, a missing or negative field.
    """
    path = Path(path)
    data = _read_toml(read_text(path, "energy table"), str(path))
    if "energy" not in data:
        raise UserError(f"{path}: no [energy] section")
    return _build_energy(data["energy"])


def with_overrides(hw: HardwareSpec, **changes: Any) -> HardwareSpec:
    """``hw`` with CLI-style overrides, re-validated through `build_hardware`.

    Args:
        changes: any of ``array`` ("32x32"), ``dataflow``, ``psum_bits``, ``weight_buffers``,
            ``nm`` ("2:4" / "none"),
            ``dram_bytes_per_cycle``, ``energy`` (an EnergyTable); None values are ignored.
    """
    data = describe(hw)
    given = {k: v for k, v in changes.items() if v is not None}
    if "array" in given:
        data["array"]["rows"], data["array"]["cols"] = parse_array(given.pop("array"))
        data["memory"].pop("ifmap_words_per_cycle", None)  # re-derive for the new row count
    if "dataflow" in given:
        data["array"]["dataflow"] = given.pop("dataflow")
    for key in ("psum_bits", "weight_buffers"):
        if key in given:
            data["array"][key] = given.pop(key)
    if "nm" in given:
        data["sparse"]["nm"] = given.pop("nm")
    if "dram_bytes_per_cycle" in given:
        data["memory"]["dram_bytes_per_cycle"] = given.pop("dram_bytes_per_cycle")
    energy = given.pop("energy", None)
    if given:
        raise UserError(f"unknown hardware override {sorted(given)[0]!r}")
    spec = build_hardware(data, hw.name)
    return replace(spec, energy_override=energy) if energy is not None else spec
