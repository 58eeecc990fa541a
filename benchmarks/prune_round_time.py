"""Wall time of CRISP's pruning rounds on a device (CPU or GPU).

Runs ``crisp prune`` (hybrid 2:4 + 16x16 blocks, schedule [0.5, 0.45]: round 0 applies N:M, round
1 lowers the density with blocks; one fine-tuning epoch after each) and prints the seconds of the
gradient pass, the N:M selection and each round (selection + recovery: recalibration,
fine-tuning, evaluation) from the run's ``record.json``. The dense weights do not change the
time: without ``--checkpoint`` (and no committed checkpoint for the model and data) a freshly
initialised model is pruned.

``--make-folder PATH`` first writes an ImageNet-style folder (``train/<class>/*.png`` and
``val/<class>/*.png``) of generated images: coloured shapes on a gradient, one colour scheme per
class, drawn from ``--seed``.

    python benchmarks/prune_round_time.py --make-folder runs/imagenet10 --classes 10 --size 224
    python benchmarks/prune_round_time.py --model resnet50 --data runs/imagenet10 \\
        --classes 10 --n-per-class 256 --device cuda --workers 8
    python benchmarks/prune_round_time.py --model resnet18_cifar --data glyph100-hard \\
        --classes 10 --n-per-class 256 --device cuda

Add ``--no-amp`` for fp32, or launch under ``torchrun --nproc-per-node N`` for N GPUs.
``--publish`` writes the timings to ``docs/results/prune_round_time_<device kind>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from crisp import distributed, run_folder
from crisp.cli import committed_checkpoint
from crisp.cli import main as crisp_main
from crisp.data import load_dataset
from crisp.errors import exit_on_user_error
from crisp.io import write_atomic
from crisp.models import build_model
from crisp_sim.publish import Results, markdown_table, script_command


def make_folder(root: Path, classes: int, train: int, val: int, size: int, seed: int) -> None:
    """Write ``classes`` folders of ``train`` + ``val`` generated ``size`` x ``size`` PNG images."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (classes, 3, 3))  # per class: background from/to, shape colour
    ramp = np.linspace(0.0, 1.0, size)[None, :, None]
    for split, count in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class_{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                lo, hi, ink = palette[c].astype(np.float64)
                image = np.repeat(lo + (hi - lo) * ramp, size, axis=0)
                for _ in range(int(rng.integers(2, 6))):
                    y, x = rng.integers(0, size * 3 // 4, 2)
                    h, w = rng.integers(size // 8, size // 3, 2)
                    image[y:y + h, x:x + w] = ink + rng.normal(0, 20, 3)
                pixels = np.clip(image, 0, 255).astype(np.uint8)
                write_atomic(folder / f"{i:05d}.png",
                             lambda tmp, p=pixels: Image.fromarray(p).save(tmp, format="PNG"))
    print(f"wrote {classes} classes x ({train} train + {val} val) {size}x{size} images to {root}")


def dense_checkpoint(args: argparse.Namespace) -> str:
    """``--checkpoint``, the committed one, or a freshly initialised model saved under ``--out``."""
    if args.checkpoint:
        return args.checkpoint
    committed = committed_checkpoint(args.model, args.data, 0)
    if committed is not None:
        return str(committed)
    path = args.out / f"{args.model}_init.pt"
    if distributed.is_main() and not path.is_file():
        classes = load_dataset(args.data, "train").num_classes
        torch.manual_seed(args.seed)
        state = build_model(args.model, num_classes=classes).state_dict()
        write_atomic(path, lambda tmp: torch.save(state, tmp))
    return str(path)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--make-folder", type=Path, default=None,
                   help="write a generated ImageNet-style folder here, then stop")
    p.add_argument("--size", type=int, default=224, help="generated image side (default 224)")
    p.add_argument("--train-per-class", type=int, default=260)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--data", default=None, help="data set name or folder")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--classes", default="10", help="user classes: a count or ids")
    p.add_argument("--n-per-class", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/prune_round_time"))
    p.add_argument("--publish", action="store_true",
                   help="write docs/results/prune_round_time_<cpu|cuda>.md")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Make the folder, or prune once and print the timings."""
    args = build_parser().parse_args(argv)
    if args.make_folder is not None:
        classes = int(args.classes) if args.classes.isdigit() else 10
        make_folder(args.make_folder, classes, args.train_per_class, args.val_per_class,
                    args.size, args.seed)
        return 0
    if args.data is None:
        build_parser().error("--data is required (or --make-folder)")
    results = Results(f"prune_round_time_{'cuda' if args.device.startswith('cuda') else 'cpu'}",
                      script_command(), args.publish)
    run = args.out / f"{args.model}_{Path(args.data).name}"
    flags = ["prune", "--model", args.model, "--data", args.data,
             "--checkpoint", dense_checkpoint(args), "--classes", args.classes,
             "--n-per-class", str(args.n_per_class), "--scheme", "hybrid", "--density", "0.45",
             "--step", "0.1", "--epochs", "1", "--batch-size", str(args.batch_size),
             "--device", args.device, "--workers", str(args.workers), "--seed", str(args.seed),
             "--out", str(run)]
    if args.amp is not None:
        flags.append("--amp" if args.amp else "--no-amp")
    status = crisp_main(flags)
    if status or not distributed.is_main():
        return status
    record = json.loads((run_folder.check_run(run) / "record.json").read_text())
    seconds, rt = record["seconds"], record["runtime"]
    device = rt["device"]
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name(torch.device(device))})"
    rows = [("gradient pass", seconds["gradient_pass"]),
            ("N:M selection", seconds.get("nm_selection", 0.0)),
            *((f"round {i} (select + 1 epoch + eval)", s) for i, s in enumerate(seconds["rounds"]))]
    results.add(f"`crisp prune` of {args.model} on {args.data}: hybrid 2:4 + 16x16 blocks, "
                f"rounds at density 0.5 and 0.45, one fine-tuning epoch each, "
                f"{len(record['classes'])} user classes x {args.n_per_class} images, batch "
                f"{args.batch_size}, on {device} (amp {rt['amp']}, {torch.get_num_threads()} CPU "
                f"threads, world size {record['world_size']}). Wall seconds from the run's "
                "record.")
    results.add(markdown_table(["step", "seconds"],
                               [*((name, f"{value:.2f}") for name, value in rows),
                                ("total", f"{sum(v for _, v in rows):.2f}")]))
    results.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
