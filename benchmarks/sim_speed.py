"""Simulator speed: ResNet-50 (batch 1, 224x224, every conv and fc layer), dense, per array and
dataflow: wall time after JIT warm-up, cold start in a fresh process (Numba cache warm), peak RSS.

The network is lowered once from torchvision's model and handed, pickled without its weights
(a dense run needs none), to a fresh process that does all the timing, so the cold start is a
real first run and the peak memory is the simulator's (with torch and Numba imported), not the
model's.

    python benchmarks/sim_speed.py
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

CONFIGS = [(size, kib, dataflow) for size, kib in ((32, 64), (128, 256))
           for dataflow in ("ws", "os", "is")]


def measure(workload: str) -> None:
    """In a fresh process: cold start, then the warm table, then peak RSS."""
    start = time.perf_counter()
    from accel_sim.hardware import build_hardware
    from accel_sim.simulate import simulate

    layers = pickle.loads(Path(workload).read_bytes())

    def hardware(size: int, kib: int, dataflow: str):
        return build_hardware({"array": {"rows": size, "cols": size, "dataflow": dataflow},
                               "memory": {f"{b}_sram_kib": kib
                                          for b in ("ifmap", "filter", "ofmap")}})

    simulate(layers, hardware(*CONFIGS[0]))
    cold = time.perf_counter() - start
    print(f"resnet50: {len(layers)} GEMMs, {sum(la.macs for la in layers) / 1e9:.2f} GMACs")
    print("| array | dataflow | compute cycles | total cycles | wall time (warm) |")
    print("| --- | --- | --- | --- | --- |")
    for size, kib, dataflow in CONFIGS:
        hw = hardware(size, kib, dataflow)
        simulate(layers, hw)  # JIT warm-up (a no-op once the Numba cache is warm)
        repeats = 5
        begin = time.perf_counter()
        for _ in range(repeats):
            report = simulate(layers, hw)
        wall = (time.perf_counter() - begin) / repeats
        t = report.totals
        print(f"| {size}x{size} | {dataflow} | {t.compute_cycles:,} | {t.total_cycles:,} | "
              f"{wall * 1e3:.1f} ms |")
    print(f"cold start (fresh process: imports, cached kernels, whole network on 32x32 ws): "
          f"{cold:.2f} s")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
    status = Path("/proc/self/status").read_text().split("\n")
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    print(f"peak memory of the simulating process (torch and Numba imported): {peak:.0f} MB")


def main() -> None:
    """Lower ResNet-50 here, then time the simulator in a fresh process."""
    from accel_sim.sources import load_layers

    layers = [replace(layer, weight=None) for layer in load_layers("resnet50")]
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "resnet50.pkl"
        workload.write_bytes(pickle.dumps(layers))
        subprocess.run([sys.executable, __file__, "--measure", str(workload)], check=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        measure(sys.argv[2])
    else:
        main()
