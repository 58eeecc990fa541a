"""What each part of the recovery gives at a small budget: distillation, BatchNorm recalibration.

The setting of a new user trying the demo with few images: ``resnet_small`` on the embedded
``glyph100``, 3 user classes (drawn from ``--seed``), 32 training images a class, one fine-tuning
epoch a round, schedule step 0.25, target density 0.25 and ``crisp prune``'s fine-tuning batch
(64). Every scheme is pruned under five recoveries (`VARIANTS`): ``plain`` (shuffled batches
of 64, 2 steps a round, nothing else), ``batches`` (class-balanced batches, at least 8 steps an
epoch), then with recalibration, with distillation, and with both (``all``, the default), with
``--seeds`` seeds (user images, data order, validation split, masks' ties; default 3). The
validation split is held out in all five.

The table gives, per scheme and recovery, the user-class test top-1 (mean ± standard deviation
over the seeds), the runs that collapsed (one class predicted for every user class), the runs
with a
recovery warning and the mean wall time of a run; the figure draws the top-1 with its spread.
``--publish`` writes ``docs/results/recovery.md`` and ``docs/results/figures/recovery.png``.

Run: ``.venv/bin/python benchmarks/recovery.py --publish`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch
from accuracy_density import user_data
from matplotlib import pyplot as plt

from accel_sim import plots
from crisp.cli import CHECKPOINTS
from crisp.data import load_dataset, user_subset
from crisp.errors import Parser, UserError, exit_on_user_error
from crisp.models import build_model
from crisp.pruner import SCHEMES, PruneConfig, prune
from crisp.recovery import RecoveryConfig
from crisp.train import TrainConfig
from crisp_sim.publish import Results, markdown_table, script_command

#: The recoveries compared, by name. ``plain``: the fine-tuning without any recovery (shuffled
#: batches of the configured size, however few steps they make); ``batches``: class-balanced
#: batches of at least 8 steps an epoch; then with recalibration, distillation, or both (``all``,
#: `crisp prune`'s default).
VARIANTS = {
    "plain": RecoveryConfig(distill=False, recalibrate=False, balanced=False, min_steps=1),
    "batches": RecoveryConfig(distill=False, recalibrate=False),
    "batches + recalibrate": RecoveryConfig(distill=False),
    "batches + distill": RecoveryConfig(recalibrate=False),
    "all (default)": RecoveryConfig(),
}


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags (defaults: the demo run by a new user with few images)."""
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="glyph100")
    p.add_argument("--classes", type=int, default=3, help="user classes (default 3)")
    p.add_argument("--n-per-class", type=int, default=32, help="training images a class")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs a round")
    p.add_argument("--step", type=float, default=0.25, help="schedule step")
    p.add_argument("--density", type=float, default=0.25, help="target density")
    p.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch (default 64)")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="schemes (default all)")
    p.add_argument("--seed", type=int, default=0, help="draws the classes; the first seed")
    p.add_argument("--seeds", type=int, default=3, help="seeds per run (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--publish", action="store_true",
                   help="write docs/results/recovery.md and its figure")
    return p


def run(args: argparse.Namespace) -> pd.DataFrame:
    """One row per (scheme, recovery, seed): test and validation top-1, collapse, warnings,
    seconds."""
    model = build_model("resnet_small", checkpoint=str(CHECKPOINTS / "resnet_small_glyph100.pt"))
    train, test = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    _, ids = user_subset(train, args.classes, args.n_per_class, args.seed)
    rows = []
    for seed in range(args.seed, args.seed + args.seeds):
        user_train, user_test, _ = user_data(train, test, ids, args.n_per_class, seed)
        for name, recovery in VARIANTS.items():
            for scheme in args.schemes:
                config = PruneConfig(scheme=scheme, density=args.density, step=args.step,
                                     epochs=args.epochs,
                                     train=TrainConfig(batch_size=args.batch_size),
                                     recovery=recovery)
                start = time.perf_counter()
                result = prune(model, user_train, user_test, ids, config, seed=seed)
                final = result.final
                rows.append({"scheme": scheme, "recovery": name, "seed": seed,
                             "top1": final["top1"], "val_top1": final["val_top1"],
                             "collapsed": final["predicted"] == 1 < len(ids),
                             "warned": bool(result.record["warnings"]),
                             "seconds": time.perf_counter() - start})
                print(f"seed {seed} {name:11s} {scheme:12s} top-1 {final['top1']:5.1f} "
                      f"(validation {final['val_top1']:5.1f})", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per scheme and recovery: mean and standard deviation of test top-1, collapsed and warned
    runs, mean seconds."""
    grouped = table.groupby(["scheme", "recovery"], sort=False)
    out = grouped.agg(top1=("top1", "mean"), top1_std=("top1", "std"),
                      collapsed=("collapsed", "sum"), warned=("warned", "sum"),
                      runs=("top1", "size"), seconds=("seconds", "mean")).reset_index()
    return out.fillna({"top1_std": 0.0})


def markdown(frame: pd.DataFrame) -> str:
    """A row per scheme, a column per recovery: ``top-1 ± s.d. %`` and the failures."""
    rows = []
    for scheme, part in frame.groupby("scheme", sort=False):
        cells = []
        for name in VARIANTS:
            r = part[part.recovery == name].iloc[0]
            cells.append(f"{r.top1:.1f} ± {r.top1_std:.1f} % ({r.collapsed} collapsed, "
                         f"{r.warned} warned of {r.runs})")
        rows.append([scheme, *cells])
    return markdown_table(["scheme", *(f"recovery: {n}" for n in VARIANTS)], rows)


def timing(frame: pd.DataFrame) -> str:
    """Mean wall time of a run per recovery (over schemes and seeds), seconds."""
    means = frame.groupby("recovery", sort=False).seconds.mean()
    return markdown_table(["recovery", *VARIANTS],
                          [["seconds a run (mean)", *(f"{means[n]:.2f}" for n in VARIANTS)]])


def figure(frame: pd.DataFrame, context: str) -> plt.Figure:
    """Grouped bars: test top-1 per scheme under each recovery, error bars one s.d."""
    schemes = list(dict.fromkeys(frame.scheme))
    width = 0.8 / len(VARIANTS)
    with plt.rc_context(plots._STYLE):
        fig, ax = plt.subplots(figsize=(5.0, 2.2))
        for i, name in enumerate(VARIANTS):
            part = frame[frame.recovery == name].set_index("scheme").loc[schemes]
            x = np.arange(len(schemes)) + (i - (len(VARIANTS) - 1) / 2) * width
            ax.bar(x, part.top1, width, yerr=part.top1_std, capsize=1.5, label=name,
                   error_kw={"lw": 0.6})
        ax.set_xticks(np.arange(len(schemes)), schemes)
        ax.set_ylabel("user-class test top-1 (%)")
        ax.set_ylim(0, 105)
        ax.legend(title="recovery", frameon=False, fontsize=5, title_fontsize=5, ncol=4,
                  loc="lower center", bbox_to_anchor=(0.5, 1.0))
        fig.suptitle(context, fontsize=6, y=1.08)
        fig.tight_layout()
    return fig


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Run every scheme under every recovery, print and (``--publish``) write the tables."""
    args = build_parser().parse_args(argv)
    results = Results("recovery", script_command(), args.publish)
    if args.seeds < 1 or args.threads < 1:
        raise UserError(f"--seeds {args.seeds} --threads {args.threads}: allowed 1 or more")
    args.schemes = args.schemes.split(",")
    unknown = sorted(set(args.schemes) - set(SCHEMES))
    if unknown:
        raise UserError(f"--schemes: unknown {', '.join(unknown)}: allowed {', '.join(SCHEMES)}")
    torch.set_num_threads(args.threads)
    table = run(args)
    frame = summary(table)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    context = (f"resnet_small on {args.data}, {args.classes} user classes, {args.n_per_class} "
               f"images a class, {args.epochs} epoch{'s' if args.epochs != 1 else ''} a round, "
               f"step {args.step}, target density {args.density}, {args.seeds} seeds")
    d = RecoveryConfig()
    results.add(f"{context}; distillation T={d.temperature:g}, weight {d.distill_weight:g}; "
                f"a validation split of {d.val_share:g} of each class's images in every column; "
                f"plain: shuffled batches of {args.batch_size}; batches: class-balanced batches of "
                f"at least {d.min_steps} steps an epoch, then with BatchNorm recalibration, "
                "distillation, or both. Each cell: user-class test top-1, mean ± "
                "standard deviation over the seeds; collapsed: runs predicting one class for "
                "every test image; warned: runs with a round that did not recover (the pruner's "
                "warning).")
    results.add(markdown(frame))
    results.add(f"Wall time of one pruning run (all schemes and seeds, {args.threads} torch "
                "threads):")
    results.add(timing(table))
    results.figure(figure(frame, context), "recovery")
    results.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
