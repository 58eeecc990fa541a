"""User-class accuracy against density: CRISP's hybrid pattern and every baseline on glyph100.

For each number of user classes (1, 5 and 10 by default; the classes drawn from ``--seed``) the
dense checkpoint is pruned with each scheme to the same global density and fine-tuned with the
same settings (``crisp.pruner.prune``); the table gives density, user-class top-1/top-5 (full
head: arg-max over all 100 classes, as the paper's code) and wall time. Latency is left to the
simulator (``accel-sim run pruned.safetensors``).

Run: ``.venv/bin/python benchmarks/accuracy_density.py`` (about 10-15 minutes on 2 cores), or
``--quick`` for a smoke run of a minute or two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from crisp.cli import in_memory
from crisp.data import load_dataset, user_subset
from crisp.errors import exit_on_user_error
from crisp.io import write_atomic
from crisp.models import build_model
from crisp.pruner import SCHEMES, PruneConfig, prune
from crisp.train import TrainConfig


def run(args: argparse.Namespace) -> pd.DataFrame:
    """One row per (class count, scheme): density, top-1, top-5, accuracy before pruning, time."""
    model = build_model(args.model, checkpoint=args.checkpoint)
    train = load_dataset(args.data, "train")
    test = load_dataset(args.data, "test")
    rows = []
    for count in args.class_counts:
        user_train, ids = user_subset(train, count, args.n_per_class, args.seed)
        user_test, _ = user_subset(test, ids, None, args.seed)
        user_train, user_test = in_memory(user_train), in_memory(user_test)
        for scheme in args.schemes:
            config = PruneConfig(scheme=scheme, density=args.density, n=2, m=4, block=args.block,
                                 step=args.step, epochs=args.epochs, head=args.head,
                                 train=TrainConfig(batch_size=64))
            start = time.perf_counter()
            result = prune(model, user_train, user_test, ids, config, seed=args.seed)
            final = result.final
            rows.append({"classes": count, "scheme": scheme, "density": final["density"],
                         "top1": final["top1"], "top5": final["top5"],
                         "top1_before": result.record["before"]["top1"],
                         "rounds": len(result.record["rounds"]),
                         "seconds": round(time.perf_counter() - start, 1)})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1),
                  file=sys.stderr)
    return pd.DataFrame(rows)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet_small")
    p.add_argument("--checkpoint", default="checkpoints/resnet_small_glyph100.pt")
    p.add_argument("--data", default="glyph100")
    p.add_argument("--class-counts", default="1,5,10", help="user class counts (default 1,5,10)")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="schemes (default all)")
    p.add_argument("--density", type=float, default=0.25, help="global density (default 0.25)")
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--step", type=float, default=0.25, help="schedule step (default 0.25)")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs per round")
    p.add_argument("--n-per-class", type=int, default=128, help="user images per class")
    p.add_argument("--head", default="full", choices=("full", "shrink"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 and 5 classes, 32 images per class, step 0.5")
    p.add_argument("--out", default=None, help="also write the table as JSON")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.quick:
        args.class_counts, args.n_per_class, args.step = "1,5", 32, 0.5
    args.class_counts = [int(c) for c in args.class_counts.split(",")]
    args.schemes = args.schemes.split(",")
    table = run(args)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        write_atomic(Path(args.out), lambda tmp: tmp.write_text(
            json.dumps({"settings": {k: v for k, v in vars(args).items()},
                        "rows": table.to_dict(orient="records")}, indent=2) + "\n"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
