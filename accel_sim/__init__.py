"""accel-sim: a cycle-level model of a sparse systolic-array accelerator (latency, energy).

    from accel_sim import compare, load_hardware, load_layers, simulate

    layers, hw = load_layers("resnet_small"), load_hardware("edge-32x32")
    report = simulate(layers, hw)  # one LayerResult per layer, report.totals for the network
    print(report.totals.latency_us, report.to_frame().energy_total_pj.sum() / 1e6)  # µs, µJ
    schemes = compare(layers, hw, ["dense", "hybrid"], density=0.25)
    print(schemes.totals[["scheme", "latency_us", "speedup_vs_dense"]])

The names of `__all__` load on first use (PEP 562), so that a topology or a pruned
``.safetensors`` file simulates without torch and without the sweep's Parquet and Dask stack;
``simulate`` alone is bound at import, since it shares its name with the module
`accel_sim.simulate` (whose first import would otherwise put the module in its place).
"""

from __future__ import annotations

from accel_sim.simulate import simulate
from crisp import lazy_exports

_EXPORTS = {
    "compare": "accel_sim.simulate",
    "Report": "accel_sim.report",
    "LayerResult": "accel_sim.report",
    "HardwareSpec": "accel_sim.hardware",
    "load_hardware": "accel_sim.hardware",
    "build_hardware": "accel_sim.hardware",
    "with_overrides": "accel_sim.hardware",
    "load_layers": "accel_sim.sources",
    "load_workload": "accel_sim.sources",
    "LayerSparsity": "accel_sim.sparsity",
    "synthetic_network": "accel_sim.sparsity",
    "GemmLayer": "accel_sim.workload",
    "DesignPoint": "accel_sim.sweep",
    "run_sweep": "accel_sim.sweep",
    "grid": "accel_sim.sweep",
}
__all__ = ["simulate", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
