"""Latency and energy at iso-accuracy: CRISP's hybrid pattern against every baseline.

For each number of user classes (drawn from ``--seed``) the dense checkpoint is pruned with
each scheme (dense, unstructured, channel, nm, block, hybrid) at a ladder of global densities
with fine-tuning (`crisp.pruner.prune`, through `accuracy_density.measure`), every
pruned model is written in the compressed format and simulated from that file with its real
masks on the default accelerator (``--hw``, edge-32x32, with the simulator's default mapping).
``dense`` (fine-tuned on the user's classes, same settings) and ``nm`` (2:4 fixes the density)
run once per class count.

Iso-accuracy: per class count and scheme, the lowest simulated latency, and separately the
lowest energy, among the runs whose user-class top-1 is within ``--tolerance`` (1) point of
the dense model's (the ``dense`` row of that class count); then hybrid's speed-up and energy
saving over every baseline at those points (baseline / hybrid; > 1 means hybrid is better).
Accuracy is the full head's (arg-max over all classes, as the paper's code).

Settings (``--setting``; any flag overrides them):

* ``cpu``: ``resnet_small`` on ``glyph100-hard``, 1/5/10 classes, densities 0.25/0.1/0.04,
  3 fine-tuning epochs a round, schedule step 0.5, 64 images per class: 42 runs, made to
  finish in about half an hour on 2 idle cores.
* ``fashion``: ``resnet_small`` trained on all 10 Fashion-MNIST classes (Debian's
  ``dataset-fashion-mnist``), 1/2/5 user classes, else as ``cpu``.
* ``full``: ``resnet18_cifar`` on ``glyph100-hard``, 4 epochs a round, step 0.1, 256 images a
  class, a longer ladder: for a GPU (hours on a CPU).

The table is written after every run (``--out``, JSON; default
``runs/iso_accuracy/<setting>.json``) and a rerun skips the runs already in it, so an interrupted
benchmark resumes where it stopped. ``--publish`` writes ``docs/results/iso_accuracy_<data>.md``
(every run, the iso-accuracy points and hybrid's gains there) and the figure
``docs/results/figures/iso_accuracy_<data>.png``: accuracy against simulated latency per scheme
(each class count a panel) with the iso-accuracy line.

Run: ``.venv/bin/python benchmarks/iso_accuracy.py --setting cpu --threads 1 --publish``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accuracy_density import measure, simulate_file, user_data
from matplotlib import pyplot as plt
from matplotlib import ticker

from accel_sim import plots
from accel_sim.hardware import load_hardware
from crisp.data import default_image_size, load_dataset
from crisp.errors import UserError, exit_on_user_error
from crisp.io import write_atomic
from crisp.models import build_model, input_shape
from crisp.pruner import SCHEMES, PruneConfig
from crisp.train import TrainConfig
from crisp_sim.publish import Results, markdown_table, script_command

#: Each setting's defaults (flags override them).
SETTINGS: dict[str, dict[str, object]] = {
    "cpu": {"model": "resnet_small", "data": "glyph100-hard",
            "checkpoint": "checkpoints/resnet_small_glyph100-hard.pt", "class_counts": "1,5,10",
            "densities": "0.25,0.1,0.04", "epochs": 3, "step": 0.5, "n_per_class": 64},
    "fashion": {"model": "resnet_small", "data": "fashion-mnist",
                "checkpoint": "checkpoints/resnet_small_fashion-mnist.pt", "class_counts": "1,2,5",
                "densities": "0.25,0.1,0.04", "epochs": 3, "step": 0.5, "n_per_class": 64},
    "full": {"model": "resnet18_cifar", "data": "glyph100-hard",
             "checkpoint": "checkpoints/resnet18_cifar_glyph100-hard.pt",
             "class_counts": "1,5,10", "densities": "0.4,0.3,0.2,0.14,0.1,0.07,0.05,0.035,0.025",
             "epochs": 4, "step": 0.1, "n_per_class": 256},
}
#: The order of the published rows: the baselines, then the halves of hybrid, then hybrid.
ROW_ORDER = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
#: The schemes that run at every density of the ladder (the others run once).
LADDER_SCHEMES = ("unstructured", "channel", "block", "hybrid")
_KEY = ("classes", "scheme", "target")


def planned_runs(schemes: list[str], densities: list[float]) -> list[tuple[str, float]]:
    """(scheme, target density) pairs of one class count; dense and nm once (density 1 / 0.5)."""
    runs = []
    for scheme in schemes:
        if scheme == "dense":
            runs.append((scheme, 1.0))
        elif scheme == "nm":
            runs.append((scheme, 0.5))
        else:
            runs += [(scheme, d) for d in densities]
    return runs


def iso_points(table: pd.DataFrame, tolerance: float = 1.0) -> pd.DataFrame:
    """Per class count and scheme: the lowest latency and lowest energy whose top-1 is within
    ``tolerance`` points of the ``dense`` row's top-1 (NaN when no run of the scheme is).

    Returns:
        columns classes, scheme, dense_top1, runs (how many), iso_runs (within tolerance),
        latency_us, latency_top1, latency_density (the fastest iso run), energy_uj,
        energy_top1, energy_density (the most frugal iso run).
    """
    rows = []
    for count, part in table.groupby("classes", sort=True):
        dense = part[part.scheme == "dense"]
        if dense.empty:
            raise UserError(f"no dense run for {count} classes: the iso line needs one")
        reference = float(dense.top1.iloc[0])
        for scheme in [s for s in SCHEMES[::-1] if s in set(part.scheme)]:
            runs = part[part.scheme == scheme]
            ok = runs[runs.top1 >= reference - tolerance]
            row = {"classes": count, "scheme": scheme, "dense_top1": reference,
                   "runs": len(runs), "iso_runs": len(ok)}
            for metric in ("latency_us", "energy_uj"):
                name = metric.split("_")[0]
                if ok.empty:
                    row.update({metric: np.nan, f"{name}_top1": np.nan,
                                f"{name}_density": np.nan})
                else:
                    best = ok.loc[ok[metric].idxmin()]
                    row.update({metric: float(best[metric]), f"{name}_top1": float(best.top1),
                                f"{name}_density": float(best.density)})
            rows.append(row)
    return pd.DataFrame(rows)


def hybrid_gains(points: pd.DataFrame) -> pd.DataFrame:
    """Hybrid's speed-up (baseline latency / hybrid latency) and energy saving (baseline energy
    / hybrid energy) at iso-accuracy over every other scheme, per class count (NaN where
    either side has no run within the tolerance)."""
    rows = []
    for count, part in points.groupby("classes", sort=True):
        hybrid = part[part.scheme == "hybrid"]
        if hybrid.empty:
            continue
        lat, en = float(hybrid.latency_us.iloc[0]), float(hybrid.energy_uj.iloc[0])
        for _, base in part[part.scheme != "hybrid"].iterrows():
            rows.append({"classes": count, "baseline": base.scheme,
                         "speedup": base.latency_us / lat, "energy_saving": base.energy_uj / en})
    return pd.DataFrame(rows)


def figure(table: pd.DataFrame, tolerance: float = 1.0, context: str = "") -> plt.Figure:
    """Accuracy against simulated latency per scheme, one panel per class count, with each
    scheme's Pareto front and the iso-accuracy line (dense top-1 minus ``tolerance``);
    ``context`` (model, data, array, fine-tuning) is the figure's title."""
    counts = sorted(table.classes.unique())
    with plt.rc_context(plots._STYLE):
        fig, axes = plt.subplots(1, len(counts), figsize=(2.3 * len(counts), 2.1), squeeze=False)
        for ax, count in zip(axes[0], counts, strict=True):
            part = table[table.classes == count]
            for scheme in [s for s in SCHEMES[::-1] if s in set(part.scheme)]:
                sub = part[part.scheme == scheme]
                color = plots.SCHEME_COLORS.get(scheme)
                ax.scatter(sub.latency_us, sub.top1, s=9, color=color)
                front = plots.pareto_front(sub, "latency_us", "top1")
                ax.plot(front.latency_us, front.top1, lw=0.8, color=color, label=scheme)
            line = float(part[part.scheme == "dense"].top1.iloc[0]) - tolerance
            ax.axhline(line, color="grey", lw=0.6, ls="--")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_xticks([10, 20, 40, 60])
            ax.set_title(f"{count} user class{'es' if count > 1 else ''}")
            ax.set_xlabel("simulated latency (µs)")
        axes[0][0].set_ylabel("user-class top-1 (%)")
        axes[0][-1].legend(frameon=False, fontsize=5, loc="lower right")
        if context:
            fig.suptitle(f"{context}; dashed: dense top-1 - {tolerance:g} point", fontsize=6)
        fig.tight_layout()
    return fig


def _load_rows(path: Path | None) -> list[dict[str, object]]:
    if path is None or not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text())["rows"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"--out {path} is not a table this benchmark wrote ({err}): move it "
                        "away or pick another --out") from None


def _write(path: Path | None, settings: dict[str, object], rows: list[dict[str, object]]) -> None:
    if path is None:
        return
    text = json.dumps({"settings": settings, "rows": rows}, indent=2, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def run(args: argparse.Namespace) -> pd.DataFrame:
    """Every planned run not already in ``--out``; the table is rewritten after each run."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    rows = _load_rows(args.out)
    done = {tuple(r[k] for k in _KEY) for r in rows}
    hw = load_hardware(args.hw)
    side = args.image_size or default_image_size(args.data, input_shape(args.model)[1])
    train = load_dataset(args.data, "train", image_size=side)
    test = load_dataset(args.data, "test", image_size=side)
    model = build_model(args.model, num_classes=train.num_classes, checkpoint=args.checkpoint)
    shape = input_shape(args.model)
    if side is not None:
        shape = (shape[0], side, side)
    for count in args.class_counts:
        todo = [(s, d) for s, d in planned_runs(args.schemes, args.densities)
                if (count, s, d) not in done]
        if not todo:
            continue
        user_train, user_test, ids = user_data(train, test, count, args.n_per_class, args.seed)
        for scheme, density in todo:
            config = PruneConfig(scheme=scheme, density=density, n=2, m=4, block=args.block,
                                 step=args.step, epochs=args.epochs, head="full",
                                 train=TrainConfig(batch_size=args.batch_size))
            path = args.runs / f"{args.model}_{count}cls_{scheme}_{density}.safetensors"
            row = measure(model, user_train, user_test, ids, config, hw, path, shape, args.seed)
            rows.append({**row, "target": density, "class_ids": ids})
            _write(args.out, settings, rows)
            print(pd.DataFrame(rows[-1:]).drop(columns="class_ids").to_string(
                index=False, header=len(rows) == 1), file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    wanted = {(c, s, d) for c in args.class_counts
              for s, d in planned_runs(args.schemes, args.densities)}
    return table[[tuple(r) in wanted for r in table[list(_KEY)].itertuples(index=False)]]


def wide_table(table: pd.DataFrame) -> str:
    """Every run as Markdown: a row per (class count, scheme), a column per target density,
    cells ``top-1 % @ latency µs, energy µJ (d measured density)``; dense and nm (one run each,
    at their own density) in the first column."""
    targets = sorted({t for t in table.target if t < 0.5}, reverse=True)
    rows = []

    def cell(r: object) -> str:
        return (f"{r.top1:.1f} % @ {r.latency_us:.1f} µs, {r.energy_uj:.0f} µJ "
                f"(d {r.density:.3f})")

    order = {scheme: i for i, scheme in enumerate(ROW_ORDER)}
    table = table.sort_values(["classes", "scheme"], key=lambda c: c.map(order) if
                              c.name == "scheme" else c, kind="stable")
    for (count, scheme), part in table.groupby(["classes", "scheme"], sort=False):
        by_target = {r.target: r for r in part.itertuples()}
        if min(by_target) >= 0.5:  # dense, nm
            cells = [cell(r) for r in by_target.values()]
        else:
            cells = [cell(by_target[t]) if t in by_target else "" for t in targets]
        cells += [""] * (len(targets) - len(cells))
        rows.append([count, scheme, *cells])
    return markdown_table(["classes", "scheme", *(f"target {t:g}" for t in targets)], rows)


#: Published columns of the iso-accuracy tables: header and format of each.
COLUMNS = {
    "classes": ("classes", "{}"), "scheme": ("scheme", "{}"), "baseline": ("baseline", "{}"),
    "dense_top1": ("dense top-1 %", "{:.1f}"), "runs": ("runs", "{}"),
    "iso_runs": ("runs within tolerance", "{}"),
    "latency_us": ("fastest: latency µs", "{:.1f}"), "latency_top1": ("its top-1 %", "{:.1f}"),
    "latency_density": ("its density", "{:.3f}"),
    "energy_uj": ("most frugal: energy µJ", "{:.1f}"), "energy_top1": ("its top-1 %", "{:.1f}"),
    "energy_density": ("its density", "{:.3f}"),
    "speedup": ("latency ÷ hybrid's", "{:.2f}x"), "energy_saving": ("energy ÷ hybrid's", "{:.2f}x"),
}


def markdown(frame: pd.DataFrame) -> str:
    """An iso-accuracy frame as a Markdown table (:data:`COLUMNS`; NaN shown as a dash)."""
    def cell(column: str, v: object) -> str:
        if isinstance(v, float) and np.isnan(v):
            return "–"
        return COLUMNS[column][1].format(v)

    return markdown_table([COLUMNS[c][0] for c in frame.columns],
                          ([cell(c, v) for c, v in zip(frame.columns, row, strict=True)]
                           for row in frame.itertuples(index=False)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", default="cpu", choices=sorted(SETTINGS),
                   help="preset of the flags below (default cpu)")
    p.add_argument("--model", help="zoo model")
    p.add_argument("--checkpoint", help="the dense model's state dict")
    p.add_argument("--data", help="data set (glyph100-hard, fashion-mnist, idx:FOLDER, ...)")
    p.add_argument("--image-size", type=int, default=None, help="image side (default as crisp)")
    p.add_argument("--class-counts", help="user class counts, e.g. 1,5,10")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="schemes (default all)")
    p.add_argument("--densities", help="the ladder of global densities")
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--step", type=float, help="schedule step")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs per round")
    p.add_argument("--n-per-class", type=int, help="user training images per class")
    p.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch (default 32)")
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="iso-accuracy: points of top-1 below dense allowed (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--hw", default="edge-32x32", help="accelerator preset or .toml")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder for the compressed files (default runs/iso_accuracy/SETTING)")
    p.add_argument("--out", type=Path, default=None,
                   help="table (JSON), rewritten after every run; a rerun resumes from it")
    p.add_argument("--publish", action="store_true",
                   help="write docs/results/iso_accuracy_<data>.md and its figure")
    p.add_argument("--resimulate", action="store_true",
                   help="prune nothing: simulate the compressed files of the runs in --out again "
                   "with the current simulator and rewrite their latency and energy")
    return p


def resimulate(args: argparse.Namespace) -> pd.DataFrame:
    """The table in ``--out`` with every run's latency and energy simulated again from its
    compressed file (accuracy does not depend on the simulator)."""
    rows = _load_rows(args.out)
    if not rows:
        raise UserError(f"--resimulate: no table at {args.out}")
    hw = load_hardware(args.hw)
    for row in rows:
        stem = f"{args.model}_{row['classes']}cls_{row['scheme']}_{row['target']}"
        path = args.runs / f"{stem}.safetensors"
        if not path.is_file():
            raise UserError(f"--resimulate: {path} is missing: rerun without --resimulate")
        row.update(simulate_file(path, hw))
    _write(args.out, {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           rows)
    return pd.DataFrame(rows)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the benchmark, print the tables; returns the exit status."""
    args = build_parser().parse_args(argv)
    for key, value in SETTINGS[args.setting].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.runs is None:
        args.runs = Path("runs/iso_accuracy") / args.setting
    if args.out is None:
        args.out = Path("runs/iso_accuracy") / f"{args.setting}.json"
    results = Results(f"iso_accuracy_{args.data}", script_command(), args.publish)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.class_counts = [int(c) for c in str(args.class_counts).split(",")]
    args.schemes = str(args.schemes).split(",")
    unknown = sorted(set(args.schemes) - set(SCHEMES))
    if unknown or "dense" not in args.schemes:
        raise UserError(f"--schemes {','.join(args.schemes)}: allowed {', '.join(SCHEMES)}, "
                        "dense included (it sets the iso-accuracy line)")
    args.densities = [float(d) for d in str(args.densities).split(",")]
    table = resimulate(args) if args.resimulate else run(args)
    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False}
    print(table.drop(columns="class_ids").sort_values(["classes", "scheme", "density"])
          .to_string(**fmt))
    points = iso_points(table, args.tolerance)
    gains = hybrid_gains(points)
    hw = load_hardware(args.hw)
    context = (f"{args.model} on {args.data}, {hw.name} ({hw.array.rows}x{hw.array.cols} "
               f"{hw.array.dataflow.upper()}), {args.epochs} epochs a round, "
               f"{args.n_per_class} images a class")
    results.add(f"{context}; step {args.step}, block {args.block}, full head, seed {args.seed}. "
                "Each cell: user-class top-1 @ simulated latency, energy per inference "
                "(d: measured global density).")
    results.add(wide_table(table.sort_values(["classes", "target"])))
    results.add(f"Iso-accuracy: per class count and scheme, the fastest and the most frugal run "
                f"whose top-1 is within {args.tolerance:g} point of the fine-tuned dense model's "
                "(a dash: no run is).")
    results.add(markdown(points[["classes", "scheme", "dense_top1", "runs", "iso_runs",
                                 "latency_us", "latency_top1", "latency_density", "energy_uj",
                                 "energy_top1", "energy_density"]]))
    if len(gains):
        results.add("Hybrid at iso-accuracy: the baseline's latency and energy over hybrid's "
                    "(above 1: hybrid is faster or uses less energy; a dash where either has no "
                    "run within the tolerance).")
        results.add(markdown(gains))
    results.figure(figure(table, args.tolerance, context), f"iso_accuracy_{args.data}")
    results.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
