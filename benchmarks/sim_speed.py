"""Simulator speed: ResNet-50 (batch 1, 224x224, every conv and fc layer), dense, per array and
dataflow: wall time after JIT warm-up, cold start in a fresh process (Numba cache warm), peak RSS.

    python benchmarks/sim_speed.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

from accel_sim.hardware import build_hardware
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers

COLD = """
import time
start = time.perf_counter()
from accel_sim.hardware import build_hardware
from accel_sim.simulate import simulate
from accel_sim.workload import GemmLayer
hw = build_hardware({"array": {"rows": 32, "cols": 32}})
simulate([GemmLayer("x", "conv", P=3136, K=64, N=64)], hw)
print(time.perf_counter() - start)
"""


def main() -> None:
    """Print the table."""
    layers = load_layers("resnet50")
    print(f"resnet50: {len(layers)} layers, {sum(la.macs for la in layers) / 1e9:.2f} GMACs")
    print("| array | dataflow | compute cycles | total cycles | wall time (warm) |")
    print("| --- | --- | --- | --- | --- |")
    for size, kib in ((32, 64), (128, 256)):
        for dataflow in ("ws", "os", "is"):
            hw = build_hardware({"array": {"rows": size, "cols": size, "dataflow": dataflow},
                                 "memory": {f"{b}_sram_kib": kib
                                            for b in ("ifmap", "filter", "ofmap")}})
            simulate(layers, hw)  # JIT warm-up
            start = time.perf_counter()
            repeats = 5
            for _ in range(repeats):
                report = simulate(layers, hw)
            wall = (time.perf_counter() - start) / repeats
            t = report.totals
            print(f"| {size}x{size} | {dataflow} | {t.compute_cycles:,} | {t.total_cycles:,} | "
                  f"{wall * 1e3:.1f} ms |")
    cold = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, check=True)
    print(f"cold start (fresh process: imports + cached kernel + one layer): "
          f"{float(cold.stdout):.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process, incl. torch and the model): {peak:.0f} MB")


if __name__ == "__main__":
    main()
