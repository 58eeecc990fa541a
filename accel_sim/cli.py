"""The ``accel-sim`` command line: ``accel-sim layers SOURCE`` (and the simulator's commands).

Each subcommand is a ``_cmd_<name>(args) -> int`` function registered in :func:`_parser`.
User mistakes exit with status 2 and a one-line message (see :mod:`crisp.errors`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accel_sim.sources import load_layers
from accel_sim.workload import layers_frame
from crisp.errors import UserError, exit_on_user_error
from crisp.io import write_atomic


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        help="zoo model name (resnet50, vgg16_bn, mobilenet_v2, resnet_small, "
        "...) or a SCALE-Sim topology .csv",
    )
    p.add_argument("--batch", type=int, default=1, help="samples per inference (default 1)")
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="input height=width in pixels (default: the model's own, 224 or 32)",
    )
    p.add_argument("--checkpoint", default=None, help="local state dict to load into the model")


def _cmd_layers(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise UserError(f"--batch {args.batch} must be >= 1")
    frame = layers_frame(load_layers(args.source, args.batch, args.resolution, args.checkpoint))
    print(frame.to_string(index=False))
    print(f"{len(frame)} layers, {frame.macs.sum() / 1e9:.3f} GMACs")
    if args.out:
        write_atomic(Path(args.out), lambda tmp: frame.to_csv(tmp, index=False))
        print(f"wrote {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accel-sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("layers", help="print a network's GEMM layers (P, K, N, groups, ...)")
    _add_source(p)
    p.add_argument("--out", default=None, help="also write the table as CSV")
    p.set_defaults(func=_cmd_layers)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``accel-sim`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
