"""Paper-style comparisons of pruning schemes on the simulated accelerator, with figures.

Three sweeps (synthetic masks on the pruner's layer plan, `accel_sim.sparsity.synthetic_network`,
one seed), written under ``--out`` (tidy Parquet, resumable):

1. ``schemes``: ResNet-50, VGG-16 (BN) and MobileNetV2 on the 32x32 WS edge array, every scheme at
   the densities the paper's schedule reaches for 1, 5 and 10 user classes with 2:4
   (`crisp.schedule.default_density`: 0.30, 0.40, 0.40), one sweep and one figure per
   distinct density, named by the class counts that share it -> ``latency_1cls``,
   ``latency_5_10cls``, ``energy_1cls``, ``energy_5_10cls`` (normalised grouped bars) and
   ``energy_breakdown`` (stacked components, 5 and 10 classes).
2. ``arrays``: ResNet-50, every scheme at 25 % density, arrays 8x8 to 256x256 (square and
   rectangular), WS -> ``latency_vs_array`` and ``utilization_dense`` / ``utilization_hybrid``.
3. ``codesign``: ResNet-50 hybrid at 25 % with B in 8..128 on square arrays 8x8 to 128x128 ->
   ``codesign_block_array``.

Sweeps 1 and 2 use 32x32 blocks (`BLOCK`), given explicitly: the library's default block
size is 16 (`crisp.pattern_core.DEFAULT_BLOCK`).

Prints per model and class count the latency and energy of hybrid against every baseline, and
ResNet-50's latency per array. Figures go to ``--out``/figures (PNG and PDF); ``--publish``
writes the tables to ``docs/results/paper_figures.md`` and the figures (PNG) to
``docs/results/figures/``.

    python benchmarks/paper_figures.py [--out runs/paper] [--publish]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from sparse_gains import PRUNED, networks, off_target, off_target_note

from accel_sim import plots
from accel_sim.sparsity import PLANS
from accel_sim.sweep import grid, lower, run_sweep
from crisp.schedule import default_density
from crisp_sim.publish import Results, markdown_table, script_command

MODELS = ("resnet50", "vgg16_bn", "mobilenet_v2")
SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
BASELINES = ("dense", "unstructured", "channel", "nm", "block")
CLASS_COUNTS = (1, 5, 10)
BLOCK = 32
"""Block size B of sweeps 1 and 2: the 32x32 array's side (the published numbers use it)."""
ARRAYS = [(s, s) for s in (8, 16, 32, 64, 128, 256)] + [
    (16, 64), (64, 16), (32, 128), (128, 32), (64, 256), (256, 64)]
PLAN = "pruner"
"""Layer plan of every sweep's synthetic masks (`accel_sim.sparsity.PLANS`)."""


def reductions(totals: pd.DataFrame) -> pd.DataFrame:
    """Per model: hybrid's latency and energy reduction (baseline / hybrid) against each scheme."""
    rows = []
    for model, part in totals.groupby("model", sort=False):
        by = part.set_index("scheme")
        for base in BASELINES:
            rows.append({
                "model": model, "vs": base, "hybrid_latency_us": by.latency_us["hybrid"],
                "latency_x": by.latency_us[base] / by.latency_us["hybrid"],
                "energy_x": by.energy_total_pj[base] / by.energy_total_pj["hybrid"],
            })
    return pd.DataFrame(rows)


def class_groups(counts: tuple[int, ...] = CLASS_COUNTS) -> dict[float, tuple[int, ...]]:
    """The class counts by the density the paper's 2:4 schedule gives them, in order
    (``{0.3: (1,), 0.4: (5, 10)}``): counts that share a density share a sweep and a figure."""
    groups: dict[float, tuple[int, ...]] = {}
    for classes in counts:
        density = round(default_density(classes, 2, 4), 6)
        groups[density] = (*groups.get(density, ()), classes)
    return groups


def classes_text(counts: tuple[int, ...]) -> str:
    """``1 user class``, ``5 and 10 user classes``."""
    numbers = ", ".join(map(str, counts[:-1])) + " and " if len(counts) > 1 else ""
    return f"{numbers}{counts[-1]} user {'class' if counts == (1,) else 'classes'}"


def scheme_figures(out: Path, results: Results, scheduler: str | None) -> None:
    """Sweep 1: the figures per distinct density and the table of hybrid's reductions."""
    rows, missed = [], []
    for density, counts in class_groups().items():
        for model in MODELS:
            layers = list(lower(model, 1))
            missed += [f"{model} {text}"
                       for text in off_target(layers, networks(layers, PRUNED, density), density)]
        tag = "_".join(map(str, counts))
        df = run_sweep(grid(MODELS, SCHEMES, [density], [(32, 32)], blocks=(BLOCK,), plan=PLAN),
                       out / f"schemes_{tag}cls", scheduler)
        context = f"{classes_text(counts)} (density {density:.2f}), synthetic masks ({PLAN} plan)"
        for metric, stem in (("latency_us", "latency"), ("energy_total_pj", "energy")):
            results.figure(plots.normalised_bars(df, metric, context), f"{stem}_{tag}cls")
        if CLASS_COUNTS[-1] in counts:
            results.figure(plots.energy_breakdown(df, context), "energy_breakdown")
        table = reductions(plots.network_totals(df, ["model", "scheme"]))
        for model, part in table.groupby("model", sort=False):
            by = part.set_index("vs")
            cells = [f"{by.latency_x[b]:.2f}x / {by.energy_x[b]:.2f}x" for b in BASELINES]
            rows.append([", ".join(map(str, counts)), f"{density:.2f}", model,
                         f"{by.hybrid_latency_us.iloc[0]:,.0f}", *cells])
    results.add(f"Hybrid (2:4 + {BLOCK}x{BLOCK} blocks) against each baseline on `edge-32x32` "
                "(32x32 WS, 2:4 multiplexers, block skipping, 16 B/cycle DRAM), synthetic masks "
                f"(seed 0; {PLANS[PLAN]}), every scheme mapped at its best, at the density the "
                "paper's schedule reaches for the class count; N:M only is 2:4 (density 0.5). "
                "Cells: baseline latency ÷ hybrid latency / baseline energy ÷ hybrid energy "
                "(above 1: hybrid is faster / uses less energy).")
    results.add(markdown_table(["classes", "density", "model", "hybrid latency µs",
                                *(f"{b} ÷ hybrid" for b in BASELINES)], rows)
                + off_target_note(missed))


def array_figures(out: Path, results: Results, scheduler: str | None) -> None:
    """Sweep 2: latency against array size, utilisation maps and ResNet-50's latency table."""
    df = run_sweep(grid(["resnet50"], SCHEMES, [0.25], ARRAYS, blocks=(BLOCK,), plan=PLAN),
                   out / "arrays", scheduler)
    results.figure(plots.latency_vs_array(df), "latency_vs_array")
    for scheme in ("dense", "hybrid"):
        results.figure(plots.utilization_heatmap(df, scheme), f"utilization_{scheme}")
    totals = plots.network_totals(df, ["scheme", "rows", "cols"])
    latency = totals.pivot_table(index=["rows", "cols"], columns="scheme", values="latency_us")
    rows = [[f"{r}x{c}", *(f"{row[s]:,.1f}" for s in SCHEMES)]
            for (r, c), row in latency.iterrows()]
    results.add(f"ResNet-50 at 25 % density on WS arrays (B = {BLOCK}, SRAMs and DRAM bandwidth "
                f"scaled with the array side from `edge-32x32`; synthetic masks: {PLANS[PLAN]}): "
                "latency per inference.")
    results.add(markdown_table(["array", *(f"{s} µs" for s in SCHEMES)], rows))


def codesign_figure(out: Path, results: Results, scheduler: str | None) -> None:
    """Sweep 3: the block size x array size co-design map."""
    arrays = [(s, s) for s in (8, 16, 32, 64, 128)]
    points = grid(["resnet50"], ["dense", "hybrid"], [0.25], arrays, blocks=(8, 16, 32, 64, 128),
                  plan=PLAN)
    df = run_sweep(points, out / "codesign", scheduler)
    results.figure(plots.codesign_map(df), "codesign_block_array")


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/paper"),
                        help="sweep results (resumable) and, without --publish, the figures")
    parser.add_argument("--scheduler", default=None, help="existing Dask scheduler address")
    parser.add_argument("--publish", action="store_true",
                        help="write docs/results/paper_figures.md and the figures")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the three sweeps; print (and publish) the tables and figures."""
    args = build_parser().parse_args(argv)
    results = Results("paper_figures", script_command(), args.publish,
                      local=args.out / "figures")
    scheme_figures(args.out, results, args.scheduler)
    array_figures(args.out, results, args.scheduler)
    codesign_figure(args.out, results, args.scheduler)
    results.write()


if __name__ == "__main__":
    main()
