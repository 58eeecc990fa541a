"""How much of a scheme comparison is the schedule: SCALE-Sim's fixed schedule against the mapper.

ResNet-50 (batch 1, 224x224) at one density (default 25 %) on the edge-32x32 preset (WS, 2:4
multiplexers, block skipping with B = 32, 64 KiB SRAMs, 16 B/cycle DRAM), synthetic masks, seed 0.
Three settings per scheme:

- ``scalesim, psum 8``: SCALE-Sim's fixed schedule with partial sums counted at the operand width
  (the model before the mapper, less the fixed ifmap-union bug);
- ``scalesim, psum 32``: the same schedule with 32-bit partial sums;
- ``best, psum 32``: the mapper's per-layer loop order and stream tile (the default).

Prints latency, total cycles, DRAM bytes over the compulsory floor and what bounds the network,
then hybrid's latency ratio against channel and block pruning in each setting, and writes the
roofline figure of the ``best`` setting to ``--figures`` (PNG and PDF).

    python benchmarks/mapping_gains.py [--density 0.25] [--figures docs/figures]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from accel_sim import plots
from accel_sim.hardware import load_hardware, with_overrides
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import synthetic_network

SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
SETTINGS = (("scalesim", 8), ("scalesim", 32), ("best", 32))


def main() -> None:
    """Print the side-by-side table and write the roofline figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--density", type=float, default=0.25)
    parser.add_argument("--figures", default="docs/figures")
    args = parser.parse_args()
    layers = load_layers(args.model)
    base = load_hardware("edge-32x32")
    nets = {s: synthetic_network(layers, s, args.density, seed=0) for s in SCHEMES}
    rows, frames = [], []
    for mapping, psum in SETTINGS:
        hw = with_overrides(base, psum_bits=psum)
        for scheme in SCHEMES:
            report = simulate(nets[scheme][0], hw, nets[scheme][1], mapping=mapping)
            t = report.totals
            rows.append({"mapping": mapping, "psum_bits": psum, "scheme": scheme,
                         "latency_us": t.latency_us, "compute_cycles": t.compute_cycles,
                         "total_cycles": t.total_cycles, "dram_MB": t.dram_bytes / 1e6,
                         "over_floor": t.dram_over_compulsory, "bound": t.bound,
                         "energy_uJ": t.energy_total_pj / 1e6})
            if mapping == "best":
                frames.append(report.to_frame(totals=False).assign(scheme=scheme))
    table = pd.DataFrame(rows)
    print(f"{args.model} at density {args.density} on {base.name}\n")
    print("| mapping | psum bits | scheme | latency us | compute cycles | total cycles | DRAM MB | "
          "x floor | bound | energy uJ |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in table.itertuples():
        print(f"| {r.mapping} | {r.psum_bits} | {r.scheme} | {r.latency_us:,.0f} | "
              f"{r.compute_cycles:,} | {r.total_cycles:,} | {r.dram_MB:.1f} | "
              f"{r.over_floor:.2f} | {r.bound} | {r.energy_uJ:,.0f} |")
    print("\n| mapping | psum bits | hybrid / channel latency | hybrid / block latency |")
    print("| --- | --- | --- | --- |")
    for (mapping, psum), part in table.groupby(["mapping", "psum_bits"], sort=False):
        lat = part.set_index("scheme").latency_us
        print(f"| {mapping} | {psum} | {lat.hybrid / lat.channel:.2f} | "
              f"{lat.hybrid / lat.block:.2f} |")
    fig = plots.roofline(pd.concat(frames), base.array.rows * base.array.cols,
                         base.memory.dram_bytes_per_cycle)
    paths = plots.save(fig, Path(args.figures) / f"roofline_{args.model}")
    print("\nwrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
