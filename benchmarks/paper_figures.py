"""Paper-style comparisons of pruning schemes on the simulated accelerator, with figures.

Three sweeps (synthetic masks, one seed), written under ``--out`` (tidy Parquet, resumable) and
as figures (PNG + PDF) under ``--figures``:

1. ``schemes``: ResNet-50, VGG-16 (BN) and MobileNetV2 on the 32x32 WS edge array, every scheme at
   the densities the paper's schedule reaches for 1, 5 and 10 user classes with 2:4
   (:func:`crisp.schedule.default_density`: 0.30, 0.40, 0.40), one sweep and one figure per
   distinct density, named by the class counts that share it -> ``latency_1cls``,
   ``latency_5_10cls``, ``energy_1cls``, ``energy_5_10cls`` (normalised grouped bars) and
   ``energy_breakdown`` (stacked components, 5 and 10 classes).
2. ``arrays``: ResNet-50, every scheme at 25 % density, arrays 8x8 to 256x256 (square and
   rectangular), WS -> ``latency_vs_array`` and ``utilization_dense`` / ``utilization_hybrid``.
3. ``codesign``: ResNet-50 hybrid at 25 % with B in 8..128 on square arrays 8x8 to 128x128 ->
   ``codesign_block_array``.

Sweeps 1 and 2 use 32x32 blocks (:data:`BLOCK`), given explicitly: the library's default block
size is 16 (:data:`crisp.pattern_core.DEFAULT_BLOCK`).

It prints the tables recorded in the README: per model and class count, the latency and energy
of hybrid against dense, unstructured and channel pruning.

    python benchmarks/paper_figures.py [--out runs/paper] [--figures docs/figures]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from accel_sim import plots
from accel_sim.sweep import grid, run_sweep
from crisp.schedule import default_density

MODELS = ("resnet50", "vgg16_bn", "mobilenet_v2")
SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
CLASS_COUNTS = (1, 5, 10)
BLOCK = 32
"""Block size B of sweeps 1 and 2: the 32x32 array's side (the published numbers use it)."""
ARRAYS = [(s, s) for s in (8, 16, 32, 64, 128, 256)] + [
    (16, 64), (64, 16), (32, 128), (128, 32), (64, 256), (256, 64)]


def reductions(totals: pd.DataFrame) -> pd.DataFrame:
    """Per model: hybrid's latency and energy reduction (baseline / hybrid) against each scheme."""
    rows = []
    for model, part in totals.groupby("model", sort=False):
        by = part.set_index("scheme")
        for base in ("dense", "unstructured", "channel", "nm", "block"):
            rows.append({
                "model": model, "vs": base,
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


def scheme_figures(out: Path, figures: Path, scheduler: str | None) -> None:
    tables = []
    for density, counts in class_groups().items():
        tag = "_".join(map(str, counts))
        df = run_sweep(grid(MODELS, SCHEMES, [density], [(32, 32)], blocks=(BLOCK,)),
                       out / f"schemes_{tag}cls", scheduler)
        context = f"{classes_text(counts)} (density {density:.2f}), synthetic masks"
        for metric, stem in (("latency_us", "latency"), ("energy_total_pj", "energy")):
            plots.save(plots.normalised_bars(df, metric, context), figures / f"{stem}_{tag}cls")
        if CLASS_COUNTS[-1] in counts:
            plots.save(plots.energy_breakdown(df, context), figures / "energy_breakdown")
        table = reductions(plots.network_totals(df, ["model", "scheme"]))
        table.insert(0, "density", density)
        tables.extend(table.assign(classes=classes)[["classes", *table.columns]]
                      for classes in counts)  # a row block per class count, as published
    table = pd.concat(tables, ignore_index=True)
    print(f"\nHybrid (2:4 + {BLOCK}x{BLOCK} blocks) on edge-32x32 WS: baseline / hybrid")
    print(table.pivot_table(index=["classes", "density", "model"], columns="vs",
                            values=["latency_x", "energy_x"]).round(2).to_string())


def array_figures(out: Path, figures: Path, scheduler: str | None) -> None:
    df = run_sweep(grid(["resnet50"], SCHEMES, [0.25], ARRAYS, blocks=(BLOCK,)), out / "arrays",
                   scheduler)
    plots.save(plots.latency_vs_array(df), figures / "latency_vs_array")
    for scheme in ("dense", "hybrid"):
        plots.save(plots.utilization_heatmap(df, scheme), figures / f"utilization_{scheme}")
    totals = plots.network_totals(df, ["scheme", "rows", "cols"])
    print("\nResNet-50 at 25 % density, WS: latency (us) per array")
    print(totals.pivot_table(index=["rows", "cols"], columns="scheme", values="latency_us")
          .round(1).to_string())


def codesign_figure(out: Path, figures: Path, scheduler: str | None) -> None:
    arrays = [(s, s) for s in (8, 16, 32, 64, 128)]
    points = grid(["resnet50"], ["dense", "hybrid"], [0.25], arrays, blocks=(8, 16, 32, 64, 128))
    df = run_sweep(points, out / "codesign", scheduler)
    plots.save(plots.codesign_map(df), figures / "codesign_block_array")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/paper"), help="sweep results")
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    parser.add_argument("--scheduler", default=None, help="existing Dask scheduler address")
    args = parser.parse_args()
    scheme_figures(args.out, args.figures, args.scheduler)
    array_figures(args.out, args.figures, args.scheduler)
    codesign_figure(args.out, args.figures, args.scheduler)
    print(f"\nfigures in {args.figures}/")


if __name__ == "__main__":
    main()
