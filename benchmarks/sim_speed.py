"""Simulator speed: ResNet-50 (batch 1, 224x224, every conv and fc layer), dense, per array and
dataflow: wall time after JIT warm-up with the mapper searching every layer (``best``, its memo of
unmasked layer shapes cleared before each run, so every unique layer is searched again), with the
memo warm, and with SCALE-Sim's fixed schedule; cold start in a fresh process (Numba cache warm),
peak RSS;
then the command line itself: a fresh ``accel-sim run resnet50.csv`` process on a SCALE-Sim
topology of the same layers.

The network is lowered once from torchvision's model and handed, pickled without its weights
(a dense run needs none), to a fresh process that does all the timing, so the cold start is a
real first run and the peak memory is the simulator's (Numba imported, no torch), not the
model's. The command-line figure is the whole process as a user sees it (interpreter start,
imports, reading the topology, simulating, printing): wall time, user+sys CPU time (the machine
may be shared, so wall time alone can mislead) and peak RSS, measured by a small launcher with
``os.wait4`` (so the parent's memory is not counted), best of a few runs after one that fills
Numba's cache. ``--publish`` writes ``docs/results/sim_speed.md``.

    python benchmarks/sim_speed.py [--publish]
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 3  # fresh command-line processes measured (after one warm-up)

CONFIGS = [(size, kib, dataflow, buffers) for size, kib in ((32, 64), (128, 256))
           for dataflow in ("ws", "os", "is") for buffers in ((1, 2) if dataflow != "os" else (1,))]
"""(array side, SRAM KiB each, dataflow, weight buffers): OS has no stationary load to hide."""


def measure(workload: str) -> None:
    """In a fresh process: cold start, then the warm table, then peak RSS."""
    start = time.perf_counter()
    from accel_sim.hardware import build_hardware
    from accel_sim.mapper import clear_memo
    from accel_sim.simulate import simulate

    layers = pickle.loads(Path(workload).read_bytes())

    def hardware(size: int, kib: int, dataflow: str, buffers: int):
        return build_hardware({"array": {"rows": size, "cols": size, "dataflow": dataflow,
                                         "weight_buffers": buffers},
                               "memory": {f"{b}_sram_kib": kib
                                          for b in ("ifmap", "filter", "ofmap")}})

    simulate(layers, hardware(*CONFIGS[0]))
    cold = time.perf_counter() - start
    print(f"ResNet-50 (batch 1, 224x224): {len(layers)} GEMMs, "
          f"{sum(la.macs for la in layers) / 1e9:.2f} GMACs, dense; SRAMs 64 KiB each at 32x32, "
          "256 KiB at 128x128; 16 B/cycle DRAM. `wall (search)`: the mapper's memo cleared "
          "before each run, so every distinct layer shape is searched again; `wall (memo warm)`: "
          "the same configuration again; `buffers`: stationary registers per PE. Mean of 5 runs "
          "after a warm-up.\n")
    print("| array | dataflow | buffers | mapping | compute cycles | total cycles | DRAM MB | "
          "wall (search) | wall (memo warm) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    repeats = 5

    def timed(hw, mapping: str, fresh: bool) -> tuple[float, object]:
        total = 0.0
        for _ in range(repeats):
            if fresh:
                clear_memo()
            begin = time.perf_counter()
            report = simulate(layers, hw, mapping=mapping)
            total += time.perf_counter() - begin
        return total / repeats, report

    for size, kib, dataflow, buffers in CONFIGS:
        hw = hardware(size, kib, dataflow, buffers)
        for mapping in ("best", "scalesim"):
            simulate(layers, hw, mapping=mapping)  # JIT warm-up (no-op with a warm Numba cache)
            search, report = timed(hw, mapping, fresh=True)
            warm = timed(hw, mapping, fresh=False)[0] if mapping == "best" else search
            t = report.totals
            print(f"| {size}x{size} | {dataflow} | {buffers} | {mapping} | {t.compute_cycles:,} | "
                  f"{t.total_cycles:,} | {t.dram_bytes / 1e6:.1f} | {search * 1e3:.1f} ms | "
                  f"{warm * 1e3:.1f} ms |")
    print(f"\nCold start (a fresh process: imports, Numba kernels from the cache, the whole "
          f"network on 32x32 WS): {cold:.2f} s.")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
    status = Path("/proc/self/status").read_text().split("\n")
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    print(f"Peak memory of that process (Numba imported, no torch): {peak:.0f} MB.")


_LAUNCHER = """
import os, sys, time
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
      os.waitstatus_to_exitcode(status))
"""


def fresh_cli_run(topology: Path) -> str:
    """Wall time, user+sys CPU time and peak RSS of fresh ``accel-sim run <topology>`` processes.

    A launcher process (a bare interpreter) spawns the console script and reads the child's
    resource usage from ``os.wait4``; ``ru_maxrss`` is the child's peak (the launcher's own, far
    smaller, is the floor). PYTHONPATH points at this checkout.
    """
    script = Path(sys.executable).parent / "accel-sim"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "accel_sim.cli"]
    command += ["run", str(topology), "--hw", "edge-32x32"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    for _ in range(RUNS + 1):  # the first fills Numba's cache if it is cold
        out = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        wall, cpu, rss_kib, code = float(out[0]), float(out[1]), int(out[2]), int(out[3])
        if code != 0:
            raise SystemExit(f"accel-sim run exited with {code}")
        rows.append((wall, cpu, rss_kib / 1024))
    first, best = rows[0], min(rows[1:])
    return (f"A fresh `accel-sim run resnet50.csv --hw edge-32x32` (a SCALE-Sim topology of the "
            f"same layers, dense, the whole process from interpreter start to printed table), "
            f"best of {RUNS}: wall {best[0]:.2f} s, user+sys CPU {best[1]:.2f} s, peak RSS "
            f"{best[2]:.0f} MB; the first run (filling Numba's cache if cold) {first[0]:.2f} s.")


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publish", action="store_true", help="write docs/results/sim_speed.md")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child process
    return parser


def main(argv: list[str] | None = None) -> None:
    """Lower ResNet-50 here, then time the simulator and the command line in fresh processes."""
    args = build_parser().parse_args(argv)
    if args.measure:  # the fresh process: nothing imported before the cold start is timed
        measure(args.measure)
        return
    from accel_sim.sources import load_layers
    from accel_sim.workload import write_topology_csv
    from crisp_sim.publish import Results, script_command

    results = Results("sim_speed", script_command(), args.publish)
    layers = [replace(layer, weight=None) for layer in load_layers("resnet50")]
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "resnet50.pkl"
        workload.write_bytes(pickle.dumps(layers))
        child = subprocess.run([sys.executable, __file__, "--measure", str(workload)],
                               check=True, capture_output=True, text=True)
        results.add(child.stdout)
        topology = Path(tmp) / "resnet50.csv"
        write_topology_csv(layers, topology)
        results.add(fresh_cli_run(topology))
    results.write()


if __name__ == "__main__":
    main()
