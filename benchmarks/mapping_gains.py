"""How much of a scheme comparison is the schedule: SCALE-Sim's fixed schedule against the mapper.

ResNet-50 (batch 1, 224x224) at one density (default 25 %) on the edge-32x32 preset (WS, 2:4
multiplexers, block skipping with B = 32, 64 KiB SRAMs, 16 B/cycle DRAM), synthetic masks on the
pruner's layer plan (`accel_sim.sparsity.synthetic_network`), seed 0.
Four settings per scheme:

- ``scalesim, psum 8``: SCALE-Sim's fixed schedule with partial sums counted at the operand width;
- ``scalesim, psum 32``: the same schedule with 32-bit partial sums;
- ``best, psum 32``: the mapper's per-layer loop order and stream tile (the default);
- ``best, psum 32, 2 weight buffers``: the same on double-buffered weights (``weight_buffers =
  2``, the ``edge-32x32-db`` preset): the next fold's weights load while the current one streams.

Prints latency, total cycles, DRAM bytes over the compulsory floor and what bounds the network,
then hybrid's latency ratio against channel and block pruning in each setting. ``--publish``
writes ``docs/results/mapping_gains.md`` and the roofline figure of the ``best`` setting,
``docs/results/figures/roofline_<model>.png``.

    python benchmarks/mapping_gains.py [--model resnet50] [--density 0.25] [--publish]
"""

from __future__ import annotations

import argparse

import pandas as pd

from accel_sim import plots
from accel_sim.hardware import load_hardware, with_overrides
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import PLANS, synthetic_network
from crisp_sim.publish import Results, markdown_table, script_command

SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
SETTINGS = (("scalesim", 8, 1), ("scalesim", 32, 1), ("best", 32, 1), ("best", 32, 2))
"""(mapping, partial-sum bits, weight buffers)."""
BLOCK = 32
PRESET = "edge-32x32"
PLAN = "pruner"


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="zoo name (default resnet50)")
    parser.add_argument("--density", type=float, default=0.25, help="default 0.25")
    parser.add_argument("--publish", action="store_true",
                        help="write docs/results/mapping_gains.md and the roofline figure")
    return parser


def run(model: str, density: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Network totals per (setting, scheme), and the per-layer frames of the ``best`` setting
    with one weight buffer."""
    layers = load_layers(model)
    base = load_hardware(PRESET)
    nets = {s: synthetic_network(layers, s, density, seed=0, block=BLOCK, plan=PLAN)
            for s in SCHEMES}
    rows, frames = [], []
    for mapping, psum, buffers in SETTINGS:
        hw = with_overrides(base, psum_bits=psum, weight_buffers=buffers)
        for scheme in SCHEMES:
            report = simulate(nets[scheme][0], hw, nets[scheme][1], mapping=mapping)
            t = report.totals
            rows.append({"mapping": mapping, "psum_bits": psum, "buffers": buffers,
                         "scheme": scheme,
                         "latency_us": t.latency_us, "compute_cycles": t.compute_cycles,
                         "total_cycles": t.total_cycles, "dram_MB": t.dram_bytes / 1e6,
                         "over_floor": t.dram_over_compulsory, "bound": t.bound,
                         "energy_uJ": t.energy_total_pj / 1e6})
            if mapping == "best" and buffers == 1:
                frames.append(report.to_frame(totals=False).assign(scheme=scheme))
    return pd.DataFrame(rows), pd.concat(frames, ignore_index=True)


def tables(totals: pd.DataFrame) -> str:
    """The two Markdown tables (deterministic: no wall times)."""
    settings = markdown_table(
        ["mapping", "psum bits", "weight buffers", "scheme", "latency µs", "compute cycles",
         "total cycles", "DRAM MB", "DRAM ÷ floor", "bound", "energy µJ"],
        ([r.mapping, r.psum_bits, r.buffers, r.scheme, f"{r.latency_us:,.0f}",
          f"{r.compute_cycles:,}",
          f"{r.total_cycles:,}", f"{r.dram_MB:.1f}", f"{r.over_floor:.2f}", r.bound,
          f"{r.energy_uJ:,.0f}"] for r in totals.itertuples()))
    ratios = []
    for (mapping, psum, buffers), part in totals.groupby(["mapping", "psum_bits", "buffers"],
                                                         sort=False):
        lat = part.set_index("scheme").latency_us
        ratios.append([mapping, psum, buffers, f"{lat.hybrid / lat.channel:.2f}",
                       f"{lat.hybrid / lat.block:.2f}"])
    return settings + "\n\n" + markdown_table(
        ["mapping", "psum bits", "weight buffers", "hybrid ÷ channel latency",
         "hybrid ÷ block latency"], ratios)


def main(argv: list[str] | None = None) -> None:
    """Print (and with ``--publish`` write) the tables and the roofline figure."""
    args = build_parser().parse_args(argv)
    results = Results("mapping_gains", script_command(), args.publish)
    totals, frames = run(args.model, args.density)
    base = load_hardware(PRESET)
    results.add(f"{args.model} (batch 1, 224x224) at density {args.density} on `{PRESET}` (WS, "
                f"B = {BLOCK}, seed 0); synthetic masks: {PLANS[PLAN]}. `DRAM ÷ floor`: DRAM "
                "bytes over the compulsory traffic; `bound`: what takes most of the network's "
                "cycles; `weight buffers`: stationary registers per PE (2: the next fold's "
                "weights load while the current one streams). In the second table, above 1 "
                "means hybrid is slower.")
    results.add(tables(totals))
    context = (f"{args.model}, density {args.density}, {PRESET} ({base.array.rows}x"
               f"{base.array.cols} {base.array.dataflow.upper()}), mapper")
    fig = plots.roofline(frames, base.array.rows * base.array.cols,
                         base.memory.dram_bytes_per_cycle, context)
    results.figure(fig, f"roofline_{args.model}")
    results.write()


if __name__ == "__main__":
    main()
