"""User-class accuracy against density: CRISP's hybrid pattern and every baseline on glyph100.

For each number of user classes (1, 5 and 10 by default; the classes drawn from ``--seed``)
the dense checkpoint is pruned with each scheme to the same global densities (0.25 and 0.0625)
and fine-tuned with the same settings (``crisp.pruner.prune``), written in the compressed format
and simulated from that file on the default accelerator (``--hw``, edge-32x32). The table gives
density, user-class top-1/top-5 (full head: arg-max over all 100 classes, as the paper's code),
simulated latency and energy, and wall time. ``--publish`` writes the table to
``docs/results/accuracy_density.md`` and accuracy against density and latency (with each
scheme's Pareto front) to ``docs/results/figures/accuracy_density.png``.

Run: ``.venv/bin/python benchmarks/accuracy_density.py --epochs 3 --publish`` (about 10-15
minutes on 2 cores), or ``--quick`` for a smoke run of a minute or two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from accel_sim import plots
from accel_sim.hardware import HardwareSpec, load_hardware
from accel_sim.simulate import simulate
from accel_sim.sources import load_workload
from crisp import compressed
from crisp.cli import in_memory
from crisp.data import load_dataset, user_subset
from crisp.errors import exit_on_user_error
from crisp.io import write_atomic
from crisp.models import build_model, input_shape
from crisp.pruner import SCHEMES, PruneConfig, prune
from crisp.train import TrainConfig
from crisp_sim.publish import Results, markdown_table, script_command


def measure(model: nn.Module, user_train: Dataset, user_test: Dataset, ids: list[int],
            config: PruneConfig, hw: HardwareSpec, path: Path,
            shape: tuple[int, int, int], seed: int = 0) -> dict[str, object]:
    """Prune ``model`` for the classes ``ids`` with ``config``, write the compressed file at
    ``path`` and simulate it with its real masks on ``hw``.

    Returns:
        one row: classes, scheme, density, top1/top5 (%, test images), val_top1 (%, the
        validation images held out of fine-tuning), predicted (distinct classes predicted on the
        test images), warnings (rounds that did not recover), top1_before, latency_us,
        energy_uj (microjoules), rounds and seconds (wall time of the pruning and fine-tuning).
    """
    start = time.perf_counter()
    result = prune(model, user_train, user_test, ids, config, seed=seed)
    seconds = round(time.perf_counter() - start, 1)
    compressed.save(result.model, path, result.masks, result.patterns, config.n, config.m,
                    config.block, shape)
    final = result.final
    return {"classes": len(ids), "scheme": config.scheme, "density": final["density"],
            "top1": final["top1"], "top5": final["top5"], "val_top1": final["val_top1"],
            "predicted": final["predicted"], "warnings": len(result.record["warnings"]),
            "top1_before": result.record["before"]["top1"], **simulate_file(path, hw),
            "rounds": len(result.record["rounds"]), "seconds": seconds}


def simulate_file(path: Path, hw: HardwareSpec) -> dict[str, float]:
    """``latency_us`` and ``energy_uj`` (microjoules) of a compressed file's real masks on
    ``hw`` (the simulator's default mapping)."""
    layers, descriptors = load_workload(str(path))
    sim = simulate(layers, hw, descriptors).totals
    return {"latency_us": sim.latency_us, "energy_uj": sim.energy_total_pj / 1e6}


def user_data(train: Dataset, test: Dataset, count: int | list[int], n_per_class: int,
              seed: int) -> tuple[Dataset, Dataset, list[int]]:
    """``count`` user classes drawn from ``seed`` (or the given class ids): their train images
    (``n_per_class`` a class, drawn from ``seed``) and test images as tensors."""
    user_train, ids = user_subset(train, count, n_per_class, seed)
    user_test, _ = user_subset(test, ids, None, seed)
    return in_memory(user_train), in_memory(user_test), ids


def run(args: argparse.Namespace) -> pd.DataFrame:
    """One row per (class count, scheme): density, top-1, top-5, accuracy before pruning, time."""
    model = build_model(args.model, checkpoint=args.checkpoint)
    hw = load_hardware(args.hw)
    train = load_dataset(args.data, "train")
    test = load_dataset(args.data, "test")
    rows = []
    for count in args.class_counts:
        user_train, user_test, ids = user_data(train, test, count, args.n_per_class, args.seed)
        # dense and nm have one density each (N:M fixes it): they run once per class count.
        runs = [(scheme, density) for scheme in args.schemes for density in args.densities
                if scheme not in ("dense", "nm") or density == args.densities[0]]
        for scheme, density in runs:
            config = PruneConfig(scheme=scheme, density=density, n=2, m=4, block=args.block,
                                 step=args.step, epochs=args.epochs, head=args.head,
                                 train=TrainConfig(batch_size=64))
            path = args.runs / f"{args.model}_{count}cls_{scheme}_{density}.safetensors"
            rows.append(measure(model, user_train, user_test, ids, config, hw, path,
                                input_shape(args.model), args.seed))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1),
                  file=sys.stderr)
    return pd.DataFrame(rows)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet_small")
    p.add_argument("--checkpoint", default="checkpoints/resnet_small_glyph100.pt")
    p.add_argument("--data", default="glyph100")
    p.add_argument("--class-counts", default="1,5,10", help="user class counts (default 1,5,10)")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="schemes (default all)")
    p.add_argument("--densities", default="0.25,0.0625",
                   help="global densities (default 0.25,0.0625)")
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--step", type=float, default=0.25, help="schedule step (default 0.25)")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs per round")
    p.add_argument("--n-per-class", type=int, default=128, help="user images per class")
    p.add_argument("--head", default="full", choices=("full", "shrink"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 and 5 classes, 32 images per class, step 0.5")
    p.add_argument("--hw", default="edge-32x32", help="accelerator preset or .toml")
    p.add_argument("--runs", type=Path, default=Path("runs/accuracy_density"),
                   help="folder for the compressed files")
    p.add_argument("--out", default=None, help="also write the table as JSON")
    p.add_argument("--publish", action="store_true",
                   help="write docs/results/accuracy_density.md and its figure")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status."""
    args = build_parser().parse_args(argv)
    results = Results("accuracy_density", script_command(), args.publish)
    if args.quick:
        args.class_counts, args.n_per_class, args.step = "1,5", 32, 0.5
    args.class_counts = [int(c) for c in args.class_counts.split(",")]
    args.schemes = args.schemes.split(",")
    args.densities = [float(d) for d in args.densities.split(",")]
    table = run(args)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        write_atomic(Path(args.out), lambda tmp: tmp.write_text(
            json.dumps({"settings": {k: v for k, v in vars(args).items()},
                        "rows": table.to_dict(orient="records")}, indent=2, default=str) + "\n"))
    hw = load_hardware(args.hw)
    context = (f"{args.model} on {args.data}, {hw.name} ({hw.array.rows}x{hw.array.cols} "
               f"{hw.array.dataflow.upper()}), {args.epochs} epochs a round")
    results.add(f"{context}, step {args.step}, {args.n_per_class} images a class, block "
                f"{args.block}, 2:4, {args.head} head, classes drawn from seed {args.seed}. "
                "Top-1/top-5: user-class accuracy on the classes' test images; latency and "
                "energy: one inference of the pruned file on the simulated array; seconds: "
                "pruning and fine-tuning wall time.")
    results.add(runs_table(table))
    results.figure(plots.accuracy_pareto(table.rename(columns={"top1": "accuracy"}), context),
                   "accuracy_density")
    results.write()
    return 0


def runs_table(table: pd.DataFrame) -> str:
    """The runs as a Markdown table."""
    return markdown_table(
        ["classes", "scheme", "density", "top-1 %", "top-5 %", "latency µs", "energy µJ",
         "rounds", "seconds"],
        ([r.classes, r.scheme, f"{r.density:.3f}", f"{r.top1:.1f}", f"{r.top5:.1f}",
          f"{r.latency_us:.1f}", f"{r.energy_uj:.1f}", r.rounds, f"{r.seconds:.0f}"]
         for r in table.itertuples()))


if __name__ == "__main__":
    raise SystemExit(main())
