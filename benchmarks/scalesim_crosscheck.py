"""Cross-check dense compute cycles against SCALE-Sim v3 (``pip install scalesim``).

Creates ``.cache/scalesim-venv`` (scalesim with numpy<2.3) if missing, writes the chosen layers as
a SCALE-Sim GEMM topology (one row per group), runs SCALE-Sim and this engine on the same array,
SRAM sizes and dataflow, and prints per-layer 'Total Cycles' side by side with the wall times.
``--publish`` writes ``docs/results/scalesim_crosscheck.md`` (``--full``:
``scalesim_crosscheck_full.md``).

    python benchmarks/scalesim_crosscheck.py     # two layers, ws/os/is, 32x32 and 128x128
    python benchmarks/scalesim_crosscheck.py --full --arrays 128x128 --dataflows ws   # all layers
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
from crisp_sim.publish import Results, markdown_table, script_command

SCALESIM_VERSION = "3.0.0"
REQUIREMENTS = [f"scalesim=={SCALESIM_VERSION}", "numpy<2.3"]
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


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="zoo name (default resnet50)")
    parser.add_argument("--arrays", default="32x32,128x128",
                        help="comma-separated ROWSxCOLS (default 32x32,128x128)")
    parser.add_argument("--kib", type=int, default=None,
                        help="each SRAM's size in KiB (default: 64 at 32x32, scaled with the "
                        "array side as the presets are: 256 at 128x128)")
    parser.add_argument("--dataflows", default="ws,os,is", help="default ws,os,is")
    parser.add_argument("--layers", default=",".join(DEFAULT_LAYERS),
                        help="comma-separated layer names (default: the two cheapest)")
    parser.add_argument("--full", action="store_true", help="every layer of the model")
    parser.add_argument("--publish", action="store_true",
                        help="write docs/results/scalesim_crosscheck.md (with --full: "
                        "scalesim_crosscheck_full.md)")
    return parser


def sram_kib(rows: int, cols: int, kib: int | None) -> int:
    """Each SRAM's KiB: ``kib``, or 64 KiB scaled with the array side from 32x32."""
    return kib or int(64 * (rows * cols) ** 0.5 / 32)


def hardware(rows: int, cols: int, kib: int, dataflow: str):
    """The engine's spec of the array SCALE-Sim runs (dense, 8-bit words)."""
    return build_hardware({"name": "xcheck", "array": {"rows": rows, "cols": cols,
                                                       "dataflow": dataflow},
                           "memory": {f"{b}_sram_kib": kib for b in ("ifmap", "filter", "ofmap")}})


def our_cycles(layers: list, rows: int, cols: int, kib: int, dataflow: str) -> pd.Series:
    """The engine's compute cycles per layer on SCALE-Sim's schedule."""
    frame = simulate(layers, hardware(rows, cols, kib, dataflow), mapping="scalesim").frame
    return pd.Series(frame.compute_cycles.to_numpy(), index=frame.layer.to_numpy())


def main(argv: list[str] | None = None) -> None:
    """Run the cross-check; print (and with ``--publish`` write) the tables."""
    args = build_parser().parse_args(argv)
    layers = load_layers(args.model)
    if not args.full:
        wanted = args.layers.split(",")
        layers = [layer for layer in layers if layer.name in wanted]
    python = ensure_venv("scalesim-venv", REQUIREMENTS)
    name = "scalesim_crosscheck_full" if args.full else "scalesim_crosscheck"
    results = Results(name, script_command(), args.publish)
    results.add(f"{args.model} (batch 1, 224x224), {len(layers)} GEMM layers, dense, 8-bit "
                f"words, SCALE-Sim's schedule (`--mapping scalesim`): our `compute_cycles` "
                f"against the `Total Cycles` column of SCALE-Sim {SCALESIM_VERSION}'s "
                "COMPUTE_REPORT (InterfaceBandwidth CALC).")
    cycles, walls = [], []
    for array in args.arrays.split(","):
        rows, cols = parse_array(array)
        kib = sram_kib(rows, cols, args.kib)
        for dataflow in args.dataflows.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                ref, ref_wall = run_scalesim(python, layers, rows, cols, kib, dataflow,
                                             Path(tmp))
            hw = hardware(rows, cols, kib, dataflow)
            simulate(layers, hw, mapping="scalesim")  # JIT warm-up
            start = time.perf_counter()
            ours = our_cycles(layers, rows, cols, kib, dataflow)
            wall = time.perf_counter() - start
            # SCALE-Sim has one row per group; sum them back per layer.
            ref["layer"] = [la.name for la in layers for _ in range(la.groups)]
            theirs = ref.groupby("layer", sort=False)["Total Cycles"].sum()
            for la in layers:
                cycles.append([array, dataflow, la.name, la.P, la.K, la.N,
                               f"{int(theirs[la.name]):,}", f"{int(ours[la.name]):,}",
                               "yes" if theirs[la.name] == ours[la.name] else "**no**"])
            equal = sum(int(theirs[la.name] == ours[la.name]) for la in layers)
            walls.append([array, dataflow, kib, f"{equal} of {len(layers)}",
                          f"{int(theirs.sum()):,}", f"{int(ours.sum()):,}", f"{ref_wall:.1f} s",
                          f"{wall * 1e3:.1f} ms"])
    if len(layers) <= 8:
        results.add(markdown_table(["array", "dataflow", "layer", "P", "K", "N",
                                    "SCALE-Sim cycles", "our cycles", "equal"], cycles))
    results.add(markdown_table(["array", "dataflow", "SRAM KiB each", "layers equal",
                                "SCALE-Sim cycles", "our cycles", "SCALE-Sim wall",
                                "our wall (warm)"], walls))
    results.write()


if __name__ == "__main__":
    main()
