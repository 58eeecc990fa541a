"""Latency and energy at iso-accuracy: CRISP's hybrid pattern against every baseline.

For each number of user classes (drawn from ``--seed``) the dense checkpoint is pruned with
each scheme (dense, unstructured, channel, nm, block, hybrid) at a ladder of global densities
with fine-tuning (`crisp.pruner.prune`, through `accuracy_density.measure`, with the recovery of
`crisp.recovery`), every pruned model is written in the compressed format and simulated from
that file with its real masks on the default accelerator (``--hw``, edge-32x32, with the
simulator's default mapping). ``dense`` (fine-tuned on the user's classes as long as the longest
hybrid run, same recovery) and ``nm`` (2:4 fixes the density) run once per class count and seed.

Every point runs with ``--seeds`` seeds (default 3: ``--seed``, ``--seed + 1``, ...), each
drawing its own user images, data order, validation split and masks' ties (the user classes stay
those drawn from ``--seed``); the tables give the mean and the standard deviation over the seeds.

Iso-accuracy: per class count and scheme, the point (scheme and target density) with the lowest
mean simulated latency, and separately the lowest mean energy, among the points whose mean
*validation* top-1 (images held out of fine-tuning) is within ``--tolerance`` (1) point of the
dense point's; the test top-1 is only reported. Then hybrid's speed-up and energy saving over
every baseline at those points, seed by seed (baseline / hybrid; > 1 means hybrid is better),
mean and spread. Accuracy is the full head's (arg-max over all classes, as the paper's code).

Settings (``--setting``; any flag overrides them):

* ``cpu``: ``resnet_small`` on ``glyph100-hard``, 1/5/10 classes, densities 0.25/0.1/0.04,
  3 fine-tuning epochs a round, schedule step 0.5, 64 images per class: 42 runs a seed.
* ``fashion``: ``resnet_small`` trained on all 10 Fashion-MNIST classes (Debian's
  ``dataset-fashion-mnist``), 1/2/5 user classes, else as ``cpu``.
* ``vit``: ``vit_small`` (a ViT for 32x32 images, patch 4, width 64) on ``glyph100-hard``,
  densities 0.4/0.25/0.15 and block 8 (its K = 64 layers hold 4 blocks of 16 a row, so B = 16
  would stop block and hybrid pruning near a third of the weights; its dense patch embedding
  alone is 8 % of them), else as ``cpu``; its files are named
  ``iso_accuracy_vit_small_glyph100-hard*`` (any model other than ``resnet_small`` puts its
  name there).
* ``full``: ``resnet18_cifar`` on ``glyph100-hard``, 4 epochs a round, step 0.1, 256 images a
  class, a longer ladder: for a GPU (hours on a CPU).

The recovery flags of ``crisp prune`` apply (``--no-distill``, ``--no-recalibrate``, ...); a run
without distillation or recalibration gets a suffix (``_no-distill``, ``_no-recalibrate``,
``_no-distill_no-recalibrate``) on its table, runs folder and published files, so the variants
sit side by side. Only those two flags name a variant: a run with another ``--temperature``,
``--distill-weight``, ``--val-share`` or ``--no-balanced`` needs its own ``--out`` and ``--runs``
(and should not be published over the default one); the table keeps the settings it ran with.

The table is written after every run (``--out``, JSON; default
``runs/iso_accuracy/<setting>[suffix].json``) and a rerun skips the runs already in it, so an
interrupted benchmark resumes where it stopped. ``--publish`` writes
``docs/results/iso_accuracy_<data>[suffix].md`` (every point, the iso-accuracy points and
hybrid's gains there) and the figure ``docs/results/figures/iso_accuracy_<data>[suffix].png``:
test accuracy against simulated latency per scheme with error bars (each class count a panel).

Run: ``.venv/bin/python benchmarks/iso_accuracy.py --setting cpu --threads 2 --publish``, then
the same with ``--no-distill --no-recalibrate``.
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
from crisp.cli import add_recovery, recovery_config
from crisp.data import default_image_size, load_dataset, user_subset
from crisp.errors import Parser, UserError, exit_on_user_error
from crisp.io import write_atomic
from crisp.models import build_for_shapes, build_model, input_shape
from crisp.pruner import SCHEMES, PruneConfig
from crisp.recovery import batchnorm_layers
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
    "vit": {"model": "vit_small", "data": "glyph100-hard",
            "checkpoint": "checkpoints/vit_small_glyph100-hard.pt", "class_counts": "1,5,10",
            "densities": "0.4,0.25,0.15", "epochs": 3, "step": 0.5, "n_per_class": 64,
            "block": 8},
    "full": {"model": "resnet18_cifar", "data": "glyph100-hard",
             "checkpoint": "checkpoints/resnet18_cifar_glyph100-hard.pt",
             "class_counts": "1,5,10", "densities": "0.4,0.3,0.2,0.14,0.1,0.07,0.05,0.035,0.025",
             "epochs": 4, "step": 0.1, "n_per_class": 256},
}
#: The order of the published rows: the baselines, then the halves of hybrid, then hybrid.
ROW_ORDER = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
#: The schemes that run at every density of the ladder (the others run once).
LADDER_SCHEMES = ("unstructured", "channel", "block", "hybrid")
_KEY = ("classes", "scheme", "target", "seed")


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


#: Measured per run and averaged over the seeds of a point (mean and standard deviation).
MEASURES = ("top1", "val_top1", "latency_us", "energy_uj", "density", "seconds")


def aggregate(table: pd.DataFrame) -> pd.DataFrame:
    """One row per point (class count, scheme, target density): the seeds' mean of every
    `MEASURES` column (its own name), their sample standard deviation (``<name>_std``, 0 for one
    seed), ``seeds`` (how many) and ``collapsed`` (runs that give every test image of several
    classes the same class)."""
    rows = []
    for (count, scheme, target), part in table.groupby(["classes", "scheme", "target"],
                                                       sort=True):
        row = {"classes": count, "scheme": scheme, "target": target, "seeds": len(part)}
        for name in MEASURES:
            values = part[name].astype(float)
            row[name] = float(values.mean())
            row[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row["collapsed"] = int(((part.predicted == 1) & (part.classes > 1)).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def iso_points(table: pd.DataFrame, tolerance: float = 1.0) -> pd.DataFrame:
    """Per class count and scheme: the fastest and the most frugal point whose mean
    *validation* top-1 is within ``tolerance`` points of the dense point's (NaN when none is).

    The choice reads only the validation images; the test top-1 is reported beside it.

    Returns:
        columns classes, scheme, dense_val (the dense point's mean validation top-1), dense_top1
        (its mean test top-1), runs (points), iso_runs (points within tolerance),
        lowest_density (the lowest mean measured density among those), and for
        ``latency`` and ``energy`` each: ``latency_us`` / ``energy_uj`` (mean) and ``_std``, the
        point's ``_target`` and ``_density``, its test ``_top1`` and ``_top1_std``.
    """
    points = aggregate(table)
    rows = []
    for count, part in points.groupby("classes", sort=True):
        dense = part[part.scheme == "dense"]
        if dense.empty:
            raise UserError(f"no dense run for {count} classes: the iso line needs one")
        reference = float(dense.val_top1.iloc[0])
        for scheme in [s for s in SCHEMES[::-1] if s in set(part.scheme)]:
            runs = part[part.scheme == scheme]
            ok = runs[runs.val_top1 >= reference - tolerance]
            row = {"classes": count, "scheme": scheme, "dense_val": reference,
                   "dense_top1": float(dense.top1.iloc[0]), "runs": len(runs),
                   "iso_runs": len(ok),
                   "lowest_density": float(ok.density.min()) if len(ok) else np.nan}
            for metric in ("latency_us", "energy_uj"):
                name = metric.split("_")[0]
                best = ok.loc[ok[metric].idxmin()] if len(ok) else None
                row.update({
                    metric: np.nan if best is None else float(best[metric]),
                    f"{metric}_std": np.nan if best is None else float(best[f"{metric}_std"]),
                    f"{name}_target": np.nan if best is None else float(best.target),
                    f"{name}_density": np.nan if best is None else float(best.density),
                    f"{name}_top1": np.nan if best is None else float(best.top1),
                    f"{name}_top1_std": np.nan if best is None else float(best.top1_std),
                })
            rows.append(row)
    return pd.DataFrame(rows)


def hybrid_gains(table: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Hybrid's speed-up (baseline latency / hybrid latency) and energy saving (baseline energy
    / hybrid energy) at the iso-accuracy points of ``points``, per class count and baseline.

    Each ratio is taken seed by seed (the runs of ``table`` at the two chosen points with the
    same seed) and reported as mean ``speedup`` / ``energy_saving`` and standard deviation
    (``_std``); NaN where either side has no point within the tolerance.
    """
    rows = []
    for count, part in points.groupby("classes", sort=True):
        hybrid = part[part.scheme == "hybrid"]
        if hybrid.empty:
            continue
        hybrid = hybrid.iloc[0]
        runs = table[table.classes == count]
        for _, base in part[part.scheme != "hybrid"].iterrows():
            row = {"classes": count, "baseline": base.scheme}
            for metric, name, ratio in (("latency_us", "latency", "speedup"),
                                        ("energy_uj", "energy", "energy_saving")):
                ratios = _seed_ratios(runs, base.scheme, base[f"{name}_target"],
                                      hybrid[f"{name}_target"], metric)
                row[ratio] = float(ratios.mean()) if len(ratios) else np.nan
                row[f"{ratio}_std"] = float(ratios.std(ddof=1)) if len(ratios) > 1 else (
                    0.0 if len(ratios) else np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _seed_ratios(runs: pd.DataFrame, scheme: str, base_target: float, hybrid_target: float,
                 metric: str) -> pd.Series:
    """``metric`` of ``scheme`` at ``base_target`` over hybrid's at ``hybrid_target``, per seed
    (empty when either target is NaN)."""
    if np.isnan(base_target) or np.isnan(hybrid_target):
        return pd.Series(dtype=float)
    base = runs[(runs.scheme == scheme) & (runs.target == base_target)].set_index("seed")[metric]
    hyb = runs[(runs.scheme == "hybrid") & (runs.target == hybrid_target)].set_index("seed")[
        metric]
    return (base / hyb).dropna()


def figure(table: pd.DataFrame, tolerance: float = 1.0, context: str = "") -> plt.Figure:
    """Test top-1 against simulated latency per scheme, one panel per class count: each point the
    mean over the seeds with error bars of one standard deviation both ways, each scheme's Pareto
    front, and the dense point's mean test top-1 less ``tolerance`` (dashed); ``context`` (model,
    data, array, fine-tuning, seeds) is the figure's title."""
    points = aggregate(table)
    counts = sorted(points.classes.unique())
    with plt.rc_context(plots._STYLE):
        fig, axes = plt.subplots(1, len(counts), figsize=(2.3 * len(counts), 2.1), squeeze=False)
        for ax, count in zip(axes[0], counts, strict=True):
            part = points[points.classes == count]
            for scheme in [s for s in SCHEMES[::-1] if s in set(part.scheme)]:
                sub = part[part.scheme == scheme]
                color = plots.SCHEME_COLORS.get(scheme)
                ax.errorbar(sub.latency_us, sub.top1, xerr=sub.latency_us_std, yerr=sub.top1_std,
                            fmt="o", ms=2, lw=0.6, capsize=1, color=color)
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
        axes[0][0].set_ylabel("user-class test top-1 (%)")
        axes[0][-1].legend(frameon=False, fontsize=5, loc="center left",
                            bbox_to_anchor=(1.0, 0.5))  # beside the data, never over it
        if context:
            fig.suptitle(f"{context}\nmean ± 1 s.d. over seeds; dashed: dense top-1 - "
                         f"{tolerance:g} point", fontsize=6)
        fig.tight_layout()
    return fig


def _load_rows(path: Path | None) -> list[dict[str, object]]:
    if path is None or not path.is_file():
        return []
    try:
        rows = list(json.loads(path.read_text())["rows"])
        missing = [key for key in _KEY if any(key not in row for row in rows)]
        if missing:  # a table without seeds is an older one
            raise KeyError(missing[0])
        return rows
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"--out {path} is not a table this benchmark wrote ({err}): move it "
                        "away or pick another --out") from None


def _write(path: Path | None, settings: dict[str, object], rows: list[dict[str, object]]) -> None:
    if path is None:
        return
    text = json.dumps({"settings": settings, "rows": rows}, indent=2, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def seeds(args: argparse.Namespace) -> list[int]:
    """The run's seeds: ``--seed``, ``--seed + 1``, ... (``--seeds`` of them)."""
    return list(range(args.seed, args.seed + args.seeds))


def run_path(args: argparse.Namespace, count: int, scheme: str, density: float,
             seed: int) -> Path:
    """Where one run's compressed file lives."""
    return args.runs / f"{args.model}_{count}cls_{scheme}_{density}_seed{seed}.safetensors"


def run(args: argparse.Namespace) -> pd.DataFrame:
    """Every planned run not already in ``--out``; the table is rewritten after each run.

    The user's classes of a class count are drawn from ``--seed``; every seed of `seeds` draws
    its own user images, data order, validation split and masks' ties.
    """
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
    recovery = recovery_config(args)
    for count in args.class_counts:
        _, ids = user_subset(train, count, args.n_per_class, args.seed)
        for seed in seeds(args):
            todo = [(s, d) for s, d in planned_runs(args.schemes, args.densities)
                    if (count, s, d, seed) not in done]
            if not todo:
                continue
            user_train, user_test, _ = user_data(train, test, ids, args.n_per_class, seed)
            for scheme, density in todo:
                # dense is fine-tuned as long as the longest hybrid run (the ladder's lowest
                # density): its fine-tuning sets the iso line
                config = PruneConfig(scheme=scheme, n=2, m=4, block=args.block,
                                     density=min(args.densities) if scheme == "dense" else density,
                                     step=args.step, epochs=args.epochs, head="full",
                                     train=TrainConfig(batch_size=args.batch_size),
                                     recovery=recovery)
                row = measure(model, user_train, user_test, ids, config, hw,
                              run_path(args, count, scheme, density, seed), shape, seed)
                rows.append({**row, "target": density, "seed": seed, "class_ids": ids})
                _write(args.out, settings, rows)
                print(pd.DataFrame(rows[-1:]).drop(columns="class_ids").to_string(
                    index=False, header=len(rows) == 1), file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    wanted = {(c, s, d, seed) for c in args.class_counts for seed in seeds(args)
              for s, d in planned_runs(args.schemes, args.densities)}
    return table[[tuple(r) in wanted for r in table[list(_KEY)].itertuples(index=False)]]


def variant(args: argparse.Namespace) -> str:
    """The file-name suffix of a run without part of the recovery: ``""`` (distillation and
    recalibration), ``"_no-distill"``, ``"_no-recalibrate"`` or
    ``"_no-distill_no-recalibrate"`` (neither; balanced batches and the validation split stay)."""
    return {(True, True): "", (False, True): "_no-distill", (True, False): "_no-recalibrate",
            (False, False): "_no-distill_no-recalibrate"}[(args.distill, args.recalibrate)]


def wide_table(table: pd.DataFrame) -> str:
    """Every point as Markdown: a row per (class count, scheme), a column per target density,
    cells ``test top-1 % ± s.d. @ latency µs, energy µJ (d measured density)`` (means over the
    seeds); dense and nm (one point each, at their own density) in the first column; a point
    with collapsed runs (one class predicted for several) says how many."""
    points = aggregate(table)
    targets = sorted({t for t in points.target if t < 0.5}, reverse=True)
    rows = []

    def cell(r: object) -> str:
        text = (f"{r.top1:.1f} ± {r.top1_std:.1f} % @ {r.latency_us:.1f} µs, "
                f"{r.energy_uj:.0f} µJ (d {r.density:.3f})")
        return text + (f", {r.collapsed} collapsed" if r.collapsed else "")

    order = {scheme: i for i, scheme in enumerate(ROW_ORDER)}
    points = points.sort_values(["classes", "scheme"], key=lambda c: c.map(order) if
                                c.name == "scheme" else c, kind="stable")
    for (count, scheme), part in points.groupby(["classes", "scheme"], sort=False):
        by_target = {r.target: r for r in part.itertuples()}
        if min(by_target) >= 0.5:  # dense, nm
            cells = [cell(r) for r in by_target.values()]
        else:
            cells = [cell(by_target[t]) if t in by_target else "" for t in targets]
        cells += [""] * (len(targets) - len(cells))
        rows.append([count, scheme, *cells])
    return markdown_table(["classes", "scheme", *(f"target {t:g}" for t in targets)], rows)


#: Published columns of the iso-accuracy tables: header and format of each (a column with a
#: ``<name>_std`` partner in the frame is shown as ``mean ± s.d.``).
COLUMNS = {
    "classes": ("classes", "{}"), "scheme": ("scheme", "{}"), "baseline": ("baseline", "{}"),
    "dense_val": ("dense validation top-1 %", "{:.1f}"),
    "dense_top1": ("dense test top-1 %", "{:.1f}"), "runs": ("points", "{}"),
    "iso_runs": ("points within tolerance", "{}"),
    "lowest_density": ("lowest density within tolerance", "{:.3f}"),
    "latency_us": ("fastest: latency µs", "{:.1f}"), "latency_top1": ("its test top-1 %", "{:.1f}"),
    "latency_density": ("its density", "{:.3f}"),
    "energy_uj": ("most frugal: energy µJ", "{:.1f}"),
    "energy_top1": ("its test top-1 %", "{:.1f}"), "energy_density": ("its density", "{:.3f}"),
    "speedup": ("latency ÷ hybrid's", "{:.2f}x"), "energy_saving": ("energy ÷ hybrid's", "{:.2f}x"),
}


def markdown(frame: pd.DataFrame, columns: list[str]) -> str:
    """``columns`` of an iso-accuracy frame as a Markdown table (`COLUMNS`; ``mean ± s.d.``
    where the frame has ``<column>_std``; NaN shown as a dash)."""
    def cell(row: pd.Series, column: str) -> str:
        v = row[column]
        if isinstance(v, float) and np.isnan(v):
            return "–"
        fmt = COLUMNS[column][1]
        text = fmt.format(v)
        if f"{column}_std" in row.index:
            text += " ± " + fmt.format(row[f"{column}_std"]).removesuffix("x")
        return text

    return markdown_table([COLUMNS[c][0] for c in columns],
                          ([cell(row, c) for c in columns] for _, row in frame.iterrows()))


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", default="cpu", choices=sorted(SETTINGS),
                   help="preset of the flags below (default cpu)")
    p.add_argument("--model", help="zoo model")
    p.add_argument("--checkpoint", help="the dense model's state dict")
    p.add_argument("--data", help="data set (glyph100-hard, fashion-mnist, idx:FOLDER, ...)")
    p.add_argument("--image-size", type=int, default=None, help="image side (default as crisp)")
    p.add_argument("--class-counts", help="user class counts, e.g. 1,5,10")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="schemes (default all)")
    p.add_argument("--densities", help="the ladder of global densities")
    p.add_argument("--block", type=int, default=None,
                   help="block size B (default 16; the vit setting's 8)")
    p.add_argument("--step", type=float, help="schedule step")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs per round")
    p.add_argument("--n-per-class", type=int, help="user training images per class")
    p.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch (default 32)")
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="iso-accuracy: points of top-1 below dense allowed (default 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="draws the user classes; the first of the seeds (default 0)")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds per point: SEED, SEED+1, ... (user images, data order, "
                   "validation split, masks' ties; default 3)")
    add_recovery(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--hw", default="edge-32x32", help="accelerator preset or .toml")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder for the compressed files (default runs/iso_accuracy/SETTING)")
    p.add_argument("--out", type=Path, default=None,
                   help="table (JSON), rewritten after every run; a rerun resumes from it")
    p.add_argument("--publish", action="store_true",
                   help="write docs/results/iso_accuracy_<data>[_no-...].md and its figure")
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
        path = run_path(args, row["classes"], row["scheme"], row["target"], row["seed"])
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
    for key, value in {"block": 16, **SETTINGS[args.setting]}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    name = f"{args.setting}{variant(args)}"
    if args.runs is None:
        args.runs = Path("runs/iso_accuracy") / name
    if args.out is None:
        args.out = Path("runs/iso_accuracy") / f"{name}.json"
    model = "" if args.model == "resnet_small" else f"{args.model}_"
    results = Results(f"iso_accuracy_{model}{args.data}{variant(args)}", script_command(),
                      args.publish)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: allowed 1 or more")
    recovery_config(args)  # bad recovery flags fail here, before any work
    args.class_counts = [int(c) for c in str(args.class_counts).split(",")]
    args.schemes = str(args.schemes).split(",")
    unknown = sorted(set(args.schemes) - set(SCHEMES))
    if unknown or "dense" not in args.schemes:
        raise UserError(f"--schemes {','.join(args.schemes)}: allowed {', '.join(SCHEMES)}, "
                        "dense included (it sets the iso-accuracy line)")
    args.densities = [float(d) for d in str(args.densities).split(",")]
    table = resimulate(args) if args.resimulate else run(args)
    print(aggregate(table).to_string(float_format=lambda v: f"{v:.3f}", index=False))
    publish(results, args, table)
    results.write()
    return 0


def _recalibration(model: str, recalibrate: bool) -> str:
    """What the recovery's BatchNorm recalibration did to ``model``, as the results say it."""
    if not recalibrate:
        return "no recalibration"
    if batchnorm_layers(build_for_shapes(model)):
        return "BatchNorm recalibration"
    return "no BatchNorm to recalibrate"


def publish(results: Results, args: argparse.Namespace, table: pd.DataFrame) -> None:
    """Add the run's tables and figure to ``results``."""
    points = iso_points(table, args.tolerance)
    gains = hybrid_gains(table, points)
    hw = load_hardware(args.hw)
    rec = recovery_config(args)
    recovery = ", ".join([f"distillation T={rec.temperature:g} w={rec.distill_weight:g}"
                          if rec.distill else "no distillation",
                          _recalibration(args.model, rec.recalibrate)])
    context = (f"{args.model} on {args.data}, {hw.name} ({hw.array.rows}x{hw.array.cols} "
               f"{hw.array.dataflow.upper()}), {args.epochs} epochs a round, "
               f"{args.n_per_class} images a class, {recovery}, {args.seeds} seeds")
    collapsed = int(aggregate(table).collapsed.sum())
    results.add(f"{context}; step {args.step}, block {args.block}, full head, classes drawn "
                f"from seed {args.seed}, seeds {', '.join(map(str, seeds(args)))} (user images, "
                f"data order, a validation split of {rec.val_share:g} of each class's images, "
                "masks' ties). Each cell: user-class test top-1 (mean ± standard deviation over "
                "the seeds) @ simulated latency, energy per inference (d: measured global "
                f"density). Runs that predict a single class for several: {collapsed} of "
                f"{len(table)}. The runs' own wall times add up to "
                f"{table.seconds.sum() / 60:.0f} min (a run already in `{args.out}` is read "
                "back, not rerun, so the provenance line's time is only this invocation's).")
    results.add(wide_table(table))
    results.add(f"Iso-accuracy: per class count and scheme, the fastest and the most frugal point "
                f"whose mean validation top-1 is within {args.tolerance:g} point of the "
                "fine-tuned dense model's (the choice reads only the validation images; the test "
                "top-1 is reported beside it; a dash: no point is).")
    results.add(markdown(points, ["classes", "scheme", "dense_val", "dense_top1", "runs",
                                  "iso_runs", "lowest_density", "latency_us", "latency_top1",
                                  "latency_density", "energy_uj", "energy_top1",
                                  "energy_density"]))
    if len(gains):
        results.add("Hybrid at iso-accuracy: the baseline's latency and energy over hybrid's, "
                    "seed by seed, mean ± standard deviation (above 1: hybrid is faster or uses "
                    "less energy; a dash where either has no point within the tolerance).")
        results.add(markdown(gains, ["classes", "baseline", "speedup", "energy_saving"]))
    results.figure(figure(table, args.tolerance, context), results.name)


if __name__ == "__main__":
    raise SystemExit(main())
