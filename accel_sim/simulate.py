"""The simulator's top-level API: `simulate` one network, `compare` sparsity schemes.

Both are pure functions of picklable inputs (layers, a HardwareSpec, descriptors, a seed), so
sweeps can fan them out to worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from accel_sim.energy import energy
from accel_sim.hardware import HardwareSpec
from accel_sim.mapper import check_choice, run_layer
from accel_sim.report import LayerResult, Report
from accel_sim.sparsity import DENSE, SCHEMES, LayerSparsity, synthetic_network
from accel_sim.workload import GemmLayer
from crisp.console import progress_bar
from crisp.errors import UserError
from crisp.pattern_core import DEFAULT_BLOCK


def simulate_layer(
    layer: GemmLayer, hw: HardwareSpec, sparsity: LayerSparsity = DENSE,
    mapping: str = "best", objective: str = "latency",
) -> LayerResult:
    """Cycles, counts and energy of one layer on ``hw`` (see `simulate`)."""
    run = run_layer(layer, hw, sparsity, mapping, objective)
    pj = energy(run.counts, hw.energy, run.total_cycles, hw.array.clock_mhz)
    return LayerResult.from_run(layer, sparsity.scheme, run, pj, hw.array.rows * hw.array.cols,
                                hw.array.clock_mhz)


def simulate(
    layers: Sequence[GemmLayer],
    hw: HardwareSpec,
    sparsity: Mapping[str, LayerSparsity] | None = None,
    progress: bool = False,
    mapping: str = "best",
    objective: str = "latency",
) -> Report:
    """Simulate a network layer by layer.

    Args:
        layers: GEMM layers in execution order (`accel_sim.sources.load_layers`).
        hw: the accelerator.
        sparsity: per-layer descriptors keyed by layer name, from any source (the pruner's
            masks, `accel_sim.sparsity.synthetic_network`); missing layers run dense.
        progress: show a tqdm bar (only on a terminal, unless ``TQDM_DISABLE`` says otherwise,
            and only if the run takes over a second; see `crisp.console.progress_bar`).
        mapping: ``best`` (the mapper searches each layer's loop order and stream tile,
            `accel_sim.mapper`) or ``scalesim`` (SCALE-Sim's fixed schedule).
        objective: what ``best`` minimises: ``latency``, ``energy`` or ``edp``.

    Raises:
        UserError: no layers, a descriptor for an unknown layer, a mask of the wrong shape, an
            SRAM too small for one fold, an unknown mapping or objective, or a network and
            array whose counts could pass `COUNT_LIMIT` (`check_count_bound`).
    """
    check_choice(mapping, objective)
    if not layers:
        raise UserError("no layers to simulate")
    sparsity = sparsity or {}
    unknown = sorted(set(sparsity) - {layer.name for layer in layers})
    if unknown:
        raise UserError(f"sparsity given for unknown layer {unknown[0]!r}")
    check_count_bound(layers, hw)
    bar = progress_bar(layers, progress, desc=hw.name, unit="layer", delay=1, leave=False)
    return Report(hw.name, tuple(
        simulate_layer(layer, hw, sparsity.get(layer.name, DENSE), mapping, objective)
        for layer in bar
    ))


COUNT_LIMIT = 2**62
"""Largest cycle or action count a simulation may reach: int64 holds 2**63 - 1, and a network's
totals are sums of its layers'."""


def count_bound(layer: GemmLayer, hw: HardwareSpec) -> float:
    """An upper bound on any cycle or action count of ``layer`` on ``hw``, whatever its mapping
    and sparsity.

    A layer makes at most ``M = P*K*N*groups`` MAC slots in at most M folds. Each fold costs at
    most its steps plus a fill of ``2R + C`` cycles and an input-edge stall of
    ``ceil(16 R / edge)`` cycles per step (16 = the largest M/N ratio of N:M multiplexers;
    ``edge`` = `HardwareSpec.edge_words_per_cycle`); DRAM moves at most 64 bytes per MAC slot (see
    `accel_sim.workload.MAX_MACS`), each costing ``1 / bandwidth`` stall cycles. Action counts
    (at most 64 per MAC slot) lie below the same bound.
    """
    rows, cols = hw.array.rows, hw.array.cols
    per_mac = 2 * rows + cols + 1 + math.ceil(16 * rows / hw.edge_words_per_cycle)
    dram = 64 / hw.memory.dram_bytes_per_cycle
    return float(layer.macs) * (max(per_mac, 64) + dram)


def check_count_bound(layers: Sequence[GemmLayer], hw: HardwareSpec) -> None:
    """Refuse a network whose counts on ``hw`` could pass `COUNT_LIMIT` (`count_bound` summed
    over its layers), before anything is simulated: such counts would wrap around.

    Raises:
        UserError: naming the bound, the array and the bandwidth.
    """
    bound = sum(count_bound(layer, hw) for layer in layers)
    if bound > COUNT_LIMIT:
        raise UserError(
            f"this network on a {hw.array.rows}x{hw.array.cols} array at "
            f"{hw.memory.dram_bytes_per_cycle:g} bytes/cycle and "
            f"{hw.edge_words_per_cycle} input-edge words/cycle could count up to {bound:.3g} "
            f"cycles, above the simulator's 64-bit limit of 2**62: use a smaller array, a higher "
            "bandwidth or smaller layers")


@dataclass(frozen=True)
class Comparison:
    """Schemes side by side on one array.

    Attributes:
        frame: one row per (scheme, layer), plus a ``total`` row per scheme (``is_total``
            True, see `accel_sim.report.Report.to_frame`).
        totals: one row per scheme with ``speedup_vs_<baseline>`` (baseline cycles / scheme
            cycles) and ``energy_saving_vs_<baseline>`` (baseline energy / scheme energy) for
            every scheme compared.
    """

    frame: pd.DataFrame
    totals: pd.DataFrame


def parse_schemes(text: str) -> list[str]:
    """``"dense,nm,hybrid"`` -> a list of known scheme names (dense first if absent).

    Raises:
        UserError: an unknown scheme.
    """
    names = [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in SCHEMES:
            raise UserError(f"scheme {name!r}: allowed {', '.join(SCHEMES)}")
    return names if "dense" in names else ["dense", *names]


def compare(
    layers: Sequence[GemmLayer],
    hw: HardwareSpec,
    schemes: Sequence[str],
    density: float,
    seed: int = 0,
    nm: tuple[int, int] = (2, 4),
    block: int = DEFAULT_BLOCK,
    progress: bool = False,
    mapping: str = "best",
    objective: str = "latency",
    plan: str = "pruner",
) -> Comparison:
    """Simulate each scheme with synthetic masks at ``density`` (one seed) and compare.

    See `accel_sim.sparsity` for how ``density`` maps onto each scheme and
    `accel_sim.sparsity.synthetic_network` for the layer ``plan`` (``pruner``: the pruner's,
    one global density; ``uniform``: every layer at ``density``); every scheme is mapped at its
    best (``mapping="best"``: each layer's schedule chosen for that scheme).
    """
    frames = []
    for scheme in schemes:
        net, descriptors = synthetic_network(list(layers), scheme, density, seed, nm, block,
                                             plan)
        report = simulate(net, hw, descriptors, progress, mapping, objective)
        frames.append(report.to_frame(totals=True).assign(scheme=scheme))
    out = pd.concat(frames, ignore_index=True)
    total = out[out.is_total].drop(columns="is_total").reset_index(drop=True)
    for base in schemes:
        row = total[total.scheme == base].iloc[0]
        total[f"speedup_vs_{base}"] = row.total_cycles / total.total_cycles
        total[f"energy_saving_vs_{base}"] = row.energy_total_pj / total.energy_total_pj
    dense = out[out.scheme == schemes[0]].set_index("layer")
    out[f"speedup_vs_{schemes[0]}"] = out.layer.map(dense.total_cycles) / out.total_cycles
    out[f"energy_saving_vs_{schemes[0]}"] = (out.layer.map(dense.energy_total_pj)
                                              / out.energy_total_pj)
    return Comparison(out, total)
