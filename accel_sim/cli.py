"""The ``accel-sim`` command line: ``layers``, ``run``, ``compare`` and ``sweep``.

Each subcommand is a ``_cmd_<name>(args) -> int`` function registered in
`build_parser`.
User mistakes exit with status 2 and a one-line message (see `crisp.errors`).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from accel_sim.hardware import (
    SCHEMA,
    HardwareSpec,
    load_energy,
    load_hardware,
    parse_array,
    parse_nm,
    with_overrides,
)
from accel_sim.mapper import check_choice
from accel_sim.report import FRAME_SUFFIXES, summary, write_frame
from accel_sim.simulate import compare, parse_schemes, simulate
from accel_sim.sources import load_layers, load_workload
from accel_sim.sparsity import PLANS, synthetic_network
from accel_sim.sweep import grid, run_sweep
from accel_sim.workload import GemmLayer, layers_frame
from crisp import ranges
from crisp.console import add_version
from crisp.errors import Parser, UserError, command_line
from crisp.io import check_output_dir, check_output_file
from crisp.pattern_core import DEFAULT_BLOCK


def _add_source(p: argparse.ArgumentParser, pruned: bool = True) -> None:
    """The SOURCE positional and its shape flags; ``pruned``: SOURCE may be a pruned file."""
    models = "a zoo model name (resnet50, vgg16_bn, mobilenet_v2, resnet_small, ...)"
    p.add_argument(
        "source",
        help=f"{models}, a SCALE-Sim topology .csv, a pruned .safetensors from 'crisp prune' "
        "or an ONNX model .onnx" if pruned else
        f"{models}, a SCALE-Sim topology .csv or an ONNX model .onnx",
    )
    p.add_argument("--batch", type=ranges.BATCH.flag("--batch"), default=1,
                   help="samples per inference (default 1)")
    p.add_argument(
        "--resolution",
        type=ranges.RESOLUTION.flag("--resolution"),
        default=None,
        help="input height=width in pixels (default: the model's own, 224 or 32)",
    )
    p.add_argument("--input-shape", default=None,
                   help="an ONNX model's input shape, dims joined by x (1x3x224x224), or "
                   "NAME=DIMS entries separated by commas for several inputs; needed where the "
                   "model's inputs have dynamic dims")
    p.add_argument("--checkpoint", default=None, help="local state dict to load into the model")
    p.add_argument("--pretrained", action="store_true",
                   help="load torchvision's weights (needs them in the torch hub cache offline)")


def _check_paths(args: argparse.Namespace) -> None:
    """Before any work: refuse a ``--out`` table that cannot be written (SOURCE and
    ``--checkpoint`` are checked where they are read, `accel_sim.sources.load_workload`)."""
    if args.out:
        check_output_file(args.out, FRAME_SUFFIXES)


def _cmd_layers(args: argparse.Namespace) -> int:
    _check_paths(args)
    frame = layers_frame(load_layers(args.source, args.batch, args.resolution, args.checkpoint,
                                     args.pretrained, weights=False,
                                     input_shape=args.input_shape))
    print(frame.to_string(index=False))
    print(f"{len(frame)} layers, {frame.macs.sum() / 1e9:.3f} GMACs")
    if args.out:
        print(f"wrote {write_frame(frame, args.out)}")
    return 0


def _add_hardware(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hw", default="edge-32x32",
                   help="preset name (edge-32x32, edge-32x32-db, cloud-128x128, dense-32x32), a "
                   ".toml file or a SCALE-Sim .cfg (default edge-32x32)")
    p.add_argument("--array", default=None, help="override the array size, e.g. 32x32")
    p.add_argument("--dataflow", default=None, help="override the dataflow: ws, os or is")
    p.add_argument("--bandwidth", default=None,
                   type=SCHEMA["memory"]["dram_bytes_per_cycle"].flag("--bandwidth"),
                   help="override the DRAM bandwidth (bytes per cycle)")
    p.add_argument("--psum-bits", type=SCHEMA["array"]["psum_bits"].flag("--psum-bits"),
                   default=None,
                   help="override the partial-sum (accumulator) width in bits (default 32)")
    p.add_argument("--weight-buffers",
                   type=SCHEMA["array"]["weight_buffers"].flag("--weight-buffers"), default=None,
                   help="override the stationary registers per PE: 1, or 2 to load the next "
                   "fold's tile while the current one streams")
    p.add_argument("--energy", default=None, help="a TOML energy table ([energy] section)")
    _add_mapping(p)
    p.add_argument("--density", type=ranges.DENSITY.flag("--density"), default=0.5,
                   help="fraction of weights kept by synthetic masks (default 0.5)")
    p.add_argument("--nm", default="2:4", help="N:M pattern of the hybrid scheme (default 2:4)")
    p.add_argument("--block", type=ranges.BLOCK.flag("--block"), default=DEFAULT_BLOCK,
                   help=f"block size B of the synthetic masks (default {DEFAULT_BLOCK})")
    p.add_argument("--seed", type=ranges.SEED.flag("--seed"), default=0,
                   help="seed of the synthetic masks (default 0)")
    _add_plan(p)
    p.add_argument("--out", default=None, help="also write the table (.csv or .parquet)")


def _add_plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", default="pruner",
                   help="layer plan of the synthetic masks: pruner (default: as 'crisp prune' "
                   "plans, the first conv and depthwise convs dense, the classifier N:M for "
                   "hybrid, one global density) or uniform (every layer at the density)")


def _add_mapping(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mapping", default="best",
                   help="best: search each layer's loop order and stream tile (default); "
                   "scalesim: SCALE-Sim's fixed schedule")
    p.add_argument("--objective", default="latency",
                   help="what --mapping best minimises: latency (default), energy or edp")


def _hardware(args: argparse.Namespace) -> HardwareSpec:
    energy = load_energy(args.energy) if args.energy else None
    check_choice(args.mapping, args.objective)
    return with_overrides(load_hardware(args.hw), array=args.array, dataflow=args.dataflow,
                          dram_bytes_per_cycle=args.bandwidth, psum_bits=args.psum_bits,
                          weight_buffers=args.weight_buffers, energy=energy)


def _layers(args: argparse.Namespace) -> list[GemmLayer]:
    if args.source.endswith(".safetensors"):
        raise UserError(f"{args.source} holds one pruned network: simulate it with "
                        "'accel-sim run'; compare takes a model name or topology")
    return load_layers(args.source, args.batch, args.resolution, args.checkpoint,
                       args.pretrained, weights=False, input_shape=args.input_shape)


def _nm(args: argparse.Namespace) -> tuple[int, int]:
    nm = parse_nm(args.nm)
    if nm is None:
        raise UserError(f"--nm {args.nm!r}: the hybrid scheme needs a pattern such as 2:4")
    return nm


def _cmd_run(args: argparse.Namespace) -> int:
    _check_paths(args)
    hw = _hardware(args)
    # weights that travel with the model (an ONNX file's, a checkpoint's): their zeros are masks
    zeros = args.scheme is None and (args.source.endswith(".onnx") or args.pretrained
                                     or args.checkpoint is not None)
    layers, descriptors = load_workload(args.source, args.batch, args.resolution,
                                        args.checkpoint, args.pretrained, seed=args.seed,
                                        weights=zeros, input_shape=args.input_shape,
                                        nm=parse_nm(args.nm) if zeros else None, block=args.block)
    if descriptors is None:
        scheme = args.scheme or "dense"
        layers, descriptors = synthetic_network(layers, scheme, args.density, args.seed,
                                                _nm(args), args.block, args.plan)
        what = f"scheme {scheme}, synthetic masks: {PLANS[args.plan]}"
    elif zeros:
        counts = Counter(d.scheme for d in descriptors.values())
        owner = args.checkpoint or ("torchvision's weights" if args.pretrained else args.source)
        what = (f"the zeros of {owner}'s weights as masks ("
                + ", ".join(f"{n} {s}" for s, n in counts.items())
                + "; --scheme for synthetic masks)")
    elif args.source.endswith(".csv"):
        what = (f"the N:M column of {args.source}, synthetic masks from --seed {args.seed} "
                "(--scheme, --density ignored)")
    else:
        what = f"the real masks of {args.source} (--scheme, --density ignored)"
    report = simulate(layers, hw, descriptors, progress=True, mapping=args.mapping,
                      objective=args.objective)
    frame = report.to_frame(totals=True)
    print(f"{hw.name}: {hw.array.rows}x{hw.array.cols} {hw.array.dataflow}, {what}")
    print(summary(frame))
    if args.out:
        print(f"wrote {write_frame(frame, args.out)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    _check_paths(args)
    hw = _hardware(args)
    schemes = parse_schemes(args.schemes)
    result = compare(_layers(args), hw, schemes, args.density, args.seed, _nm(args), args.block,
                     progress=True, mapping=args.mapping, objective=args.objective,
                     plan=args.plan)
    ratio_cols = tuple(c for c in result.totals.columns if c.startswith(("speedup", "energy_s")))
    print(f"{hw.name}: {hw.array.rows}x{hw.array.cols} {hw.array.dataflow}, density "
          f"{args.density}, synthetic masks: {PLANS[args.plan]}")
    print(summary(result.totals, ("scheme", "compute_cycles", "stall_cycles", "total_cycles",
                                  "utilization", "dram_bytes", "dram_over_compulsory",
                                  "energy_total_pj", "latency_us", *ratio_cols)))
    if args.out:
        print(f"wrote {write_frame(result.frame, args.out)}")
    return 0


def _csv(text: str, kind: type = str) -> list:
    try:
        return [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{text!r} is not a comma-separated list of {kind.__name__}") from None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from accel_sim.plots import sweep_figures  # matplotlib: only the sweep draws figures

    check_output_dir(args.out)
    points = grid(  # every point checked here, before any cluster starts
        _csv(args.models), parse_schemes(args.schemes),
        [ranges.DENSITY.parse(d, "--densities") for d in _csv(args.densities)],
        [parse_array(a) for a in _csv(args.arrays)], _csv(args.dataflows),
        [ranges.BLOCK.parse(b, "--blocks") for b in _csv(args.blocks)],
        scale_memory=args.scale_memory, nm=args.nm, hw=args.hw, batch=args.batch, seed=args.seed,
        plan=args.plan, mapping=args.mapping, objective=args.objective,
        input_shape=args.input_shape or "",
    )
    print(f"{len(points)} design points -> {args.out}")
    try:
        frame = run_sweep(points, args.out, args.scheduler, args.workers)
    except KeyboardInterrupt:  # the finished batches are stored; the cluster is closed
        raise KeyboardInterrupt("interrupted: re-run the same command to resume") from None
    figures = [] if args.no_figures else sweep_figures(frame, Path(args.out) / "figures")
    print(f"{len(frame)} rows in {Path(args.out) / 'results.parquet'}; figures: "
          + (", ".join(str(f) for f in figures) or "none"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="accel-sim", description=__doc__.splitlines()[0])
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("layers", help="print a network's GEMM layers (P, K, N, groups, ...)")
    _add_source(p)
    p.add_argument("--out", default=None, help="also write the table (.csv or .parquet)")
    p.set_defaults(func=_cmd_layers)
    p = sub.add_parser("run", help="simulate a network on an array: cycles, accesses, energy")
    _add_source(p)
    _add_hardware(p)
    p.add_argument("--scheme", default=None, help="sparsity scheme of the synthetic masks: "
                   "dense, unstructured, channel, nm, block, hybrid (default dense; an ONNX "
                   "model, or a model given --checkpoint or --pretrained, runs without --scheme "
                   "with its weights' zeros as masks)")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("compare", help="compare sparsity schemes on one array")
    _add_source(p, pruned=False)
    _add_hardware(p)
    p.add_argument("--schemes", default="dense,unstructured,channel,nm,block,hybrid",
                   help="comma-separated schemes (dense is always included)")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("sweep", help="sweep models x schemes x densities x arrays x dataflows "
                       "on Dask (resumable), writing tidy results and figures")
    p.add_argument("--models", default="resnet50",
                   help="comma-separated zoo names, SCALE-Sim topology .csv or ONNX .onnx files")
    p.add_argument("--input-shape", default=None,
                   help="the ONNX models' input shape (as for 'run'); the other models keep "
                   "their own")
    p.add_argument("--schemes", default="dense,unstructured,channel,nm,block,hybrid")
    p.add_argument("--densities", default="0.25", help="comma-separated densities in (0, 1]")
    p.add_argument("--arrays", default="16x16,32x32,64x64,128x128",
                   help="comma-separated ROWSxCOLS (see --scale-memory)")
    p.add_argument("--dataflows", default="ws", help="comma-separated: ws, os, is")
    p.add_argument("--blocks", default=str(DEFAULT_BLOCK),
                   help=f"comma-separated block sizes B (default {DEFAULT_BLOCK})")
    p.add_argument("--nm", default="2:4", help="N:M pattern of the hybrid scheme")
    p.add_argument("--hw", default="edge-32x32",
                   help="base hardware: a preset name, a .toml file or a SCALE-Sim .cfg "
                   "(default edge-32x32)")
    p.add_argument("--scale-memory", action=argparse.BooleanOptionalAction, default=None,
                   help="scale the base hardware's SRAM sizes and DRAM bandwidth with each "
                   "array's side sqrt(rows*cols) (edge-32x32's 64 KiB and 16 B/cycle become 256 "
                   "KiB and 64 B/cycle at 128x128); default: on for a preset, off for a .toml or "
                   ".cfg file, whose memory is then used as written. The results record the "
                   "memory each point ran with")
    p.add_argument("--batch", type=ranges.BATCH.flag("--batch"), default=1,
                   help="samples per inference")
    p.add_argument("--seed", type=ranges.SEED.flag("--seed"), default=0,
                   help="seed of the synthetic masks")
    _add_plan(p)
    _add_mapping(p)
    p.add_argument("--out", default="runs/sweep", help="result folder (resumes if it exists)")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address, e.g. tcp://host:8786 (default: a LocalCluster)")
    p.add_argument("--workers", type=ranges.SWEEP_WORKERS.flag("--workers"), default=None,
                   help="LocalCluster workers, at least 1 (default: cores)")
    p.add_argument("--no-figures", action="store_true", help="write the table only")
    p.set_defaults(func=_cmd_sweep)
    return parser


main = command_line(build_parser)
"""Entry point of the console script: ``main(argv) -> exit status``."""


if __name__ == "__main__":
    raise SystemExit(main())
