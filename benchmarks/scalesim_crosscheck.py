"""Cross-check dense compute cycles against SCALE-Sim v3 (``pip install scalesim``).

Creates ``.cache/scalesim-venv`` (scalesim with numpy<2.3) if missing, writes the chosen layers as
a SCALE-Sim GEMM topology (one row per group), runs SCALE-Sim and this engine on the same array,
SRAM sizes and dataflow, and prints per-layer 'Total Cycles' side by side with the wall times.

    python benchmarks/scalesim_crosscheck.py                 # default subset, ws/os/is, 32x32
    python benchmarks/scalesim_crosscheck.py --full          # every layer (tens of minutes)
    python benchmarks/scalesim_crosscheck.py --array 128x128 --dataflows os
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
from peer_venv import ensure_venv

from accel_sim.hardware import build_hardware, parse_array
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.workload import write_topology_csv

REQUIREMENTS = ["scalesim", "numpy<2.3"]
DEFAULT_LAYERS = ("layer1.0.conv1", "layer3.0.conv3")  # the cheapest ResNet-50 layers to simulate

CFG = """[general]
run_name = crosscheck
[architecture_presets]
ArrayHeight : {rows}
ArrayWidth : {cols}
IfmapSramSzkB : {kib}
FilterSramSzkB : {kib}
OfmapSramSzkB : {kib}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks : 1
ReadRequestBuffer : 32
WriteRequestBuffer : 32
[layout]
IfmapCustomLayout : False
FilterCustomLayout : False
IfmapSRAMBankBandwidth : 10
IfmapSRAMBankNum : 10
IfmapSRAMBankPort : 2
FilterSRAMBankBandwidth : 10
FilterSRAMBankNum : 10
FilterSRAMBankPort : 2
[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40
[run_presets]
InterfaceBandwidth : CALC
UseRamulatorTrace : False
"""

DRIVER = """
import sys
from scalesim.scale_sim import scalesim
s = scalesim(save_disk_space=True, verbose=False, config=sys.argv[1], topology=sys.argv[2],
             layout=sys.argv[4], input_type_gemm=True)
s.run_scale(top_path=sys.argv[3])
"""


def run_scalesim(python: Path, layers: list, rows: int, cols: int, kib: int,
                 dataflow: str, work: Path) -> tuple[pd.DataFrame, float]:
    """SCALE-Sim's COMPUTE_REPORT rows and wall time (s) for ``layers``."""
    topo, cfg, out = work / "topo.csv", work / f"{dataflow}.cfg", work / f"out-{dataflow}"
    layout = work / "layout.csv"  # SCALE-Sim opens one even with custom layouts off
    layout.write_text("Layer name,\n")
    write_topology_csv(layers, topo)
    cfg.write_text(CFG.format(rows=rows, cols=cols, kib=kib, dataflow=dataflow))
    start = time.perf_counter()
    command = [str(python), "-c", DRIVER, str(cfg), str(topo), str(out), str(layout)]
    subprocess.run(command, check=True, cwd=work)
    wall = time.perf_counter() - start
    report = next(out.rglob("COMPUTE_REPORT.csv"))
    frame = pd.read_csv(report, skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    return frame, wall


def main() -> None:
    """Run the cross-check and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--array", default="32x32")
    parser.add_argument("--kib", type=int, default=64, help="each SRAM's size (KiB)")
    parser.add_argument("--dataflows", default="ws,os,is")
    parser.add_argument("--layers", default=",".join(DEFAULT_LAYERS))
    parser.add_argument("--full", action="store_true", help="every layer of the model")
    args = parser.parse_args()
    rows, cols = parse_array(args.array)
    layers = load_layers(args.model)
    if not args.full:
        wanted = args.layers.split(",")
        layers = [layer for layer in layers if layer.name in wanted]
    python = ensure_venv("scalesim-venv", REQUIREMENTS)
    print(f"{args.model}: {len(layers)} layers ({', '.join(la.name for la in layers)}), "
          f"{args.array}, {args.kib} KiB SRAMs")
    for dataflow in args.dataflows.split(","):
        hw = build_hardware({"name": "xcheck", "array": {"rows": rows, "cols": cols,
                             "dataflow": dataflow},
                             "memory": {f"{b}_sram_kib": args.kib
                                        for b in ("ifmap", "filter", "ofmap")}})
        with tempfile.TemporaryDirectory() as tmp:
            ref, ref_wall = run_scalesim(python, layers, rows, cols, args.kib, dataflow, Path(tmp))
        simulate(layers, hw)  # JIT warm-up
        start = time.perf_counter()
        ours = simulate(layers, hw).frame
        wall = time.perf_counter() - start
        # SCALE-Sim has one row per group; sum them back per layer.
        names = [la.name for la in layers for _ in range(la.groups)]
        ref["layer"] = names
        theirs = ref.groupby("layer", sort=False)["Total Cycles"].sum()
        table = pd.DataFrame({
            "layer": ours.layer, "P": ours.P, "K": ours.K, "N": ours.N,
            "scalesim_cycles": ours.layer.map(theirs).astype(int),
            "engine_cycles": ours.compute_cycles,
        })
        table["match"] = table.scalesim_cycles == table.engine_cycles
        print(f"\n[{dataflow}]")
        print(table.to_string(index=False))
        print(f"all match: {bool(table.match.all())}; SCALE-Sim {ref_wall:.1f} s, engine "
              f"{wall * 1e3:.2f} ms, ratio {ref_wall / wall:,.0f}x")


if __name__ == "__main__":
    main()
