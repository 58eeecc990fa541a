"""The main job behind ``make demo``: prune for one user's classes, then measure on the accelerator.

On the embedded glyph100 data (no download) and the committed dense ``resnet_small`` checkpoint:
draw 10 user classes from the seed, prune the network for them with CRISP's hybrid 2:4 + block
sparsity and with each baseline (dense fine-tuning, unstructured, channel, N:M only, block only) at
one target density, write each pruned network in the compressed format, simulate every compressed
file on the default accelerator (``edge-32x32``: 32x32 int8 WS array with 2:4 multiplexers and
block skipping), and print accuracy, density, latency and energy side by side. Ends by writing the
figures (normalised latency and energy, energy breakdown, accuracy against latency).

    python -m crisp_sim.demo [--out runs/demo] [--classes 10] [--density 0.1] [--seed 0]

Each pruning run goes through ``crisp prune`` (so its folder holds ``model.pt``,
``pruned.safetensors``, ``record.json`` and the ``manifest.json`` they are checked against,
`crisp.run_folder`); each simulation reads only the compressed file.
"""

from __future__ import annotations

import os

#: Portable CPU kernels, set before torch is first imported (torch reads them when it loads):
#: ATen's baseline kernels rather than the AVX2 or AVX-512 ones this CPU offers, and MKL's
#: compatible code path, whose sums do not depend on the CPU. With oneDNN and NNPACK off while
#: pruning (`main`), no kernel left chooses its code by the CPU it finds, so the fine-tuning
#: should add its numbers in the same order on every x86 CPU: with the fastest kernels, the
#: table of an AVX-512 Intel CPU differed from an AMD CPU's. (A design goal, checked on one
#: machine only.) The demo takes 2 to 3 times longer. A variable already set is kept.
PORTABLE = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
for _name, _value in PORTABLE.items():
    os.environ.setdefault(_name, _value)

import argparse
import difflib
import json
import re
import shlex
import sys
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from accel_sim import plots
from accel_sim.hardware import load_hardware
from accel_sim.report import write_frame
from accel_sim.simulate import simulate
from accel_sim.sources import load_workload
from crisp import ranges, run_folder
from crisp.cli import CHECKPOINTS
from crisp.cli import main as crisp_main
from crisp.console import add_version
from crisp.errors import Parser, UserError, exit_on_user_error
from crisp_sim.publish import Results

SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
MODEL = "resnet_small"
CHECKPOINT = CHECKPOINTS / f"{MODEL}_glyph100.pt"
#: Torch CPU threads: a fixed count, so the table does not depend on the machine's core count.
THREADS = 2


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m crisp_sim.demo", description=__doc__.splitlines()[0])
    add_version(p)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--classes", default="10", help="user classes: a count or ids (default 10)")
    p.add_argument("--density", type=ranges.DENSITY.flag("--density"), default=0.1,
                   help="target density (default 0.1)")
    p.add_argument("--n-per-class", type=ranges.PER_CLASS.flag("--n-per-class"), default=128,
                   help="user training images per class (default 128)")
    p.add_argument("--epochs", type=ranges.EPOCHS.flag("--epochs"), default=2,
                   help="fine-tuning epochs per round")
    p.add_argument("--step", type=ranges.STEP.flag("--step"), default=0.25,
                   help="density step per round")
    p.add_argument("--block", type=ranges.BLOCK.flag("--block"), default=16,
                   help="block size B (default 16)")
    p.add_argument("--hw", default="edge-32x32", help="accelerator preset or .toml")
    p.add_argument("--seed", type=ranges.SEED.flag("--seed"), default=0,
                   help="seeds every random choice (default 0)")
    p.add_argument("--threads", type=ranges.THREADS.flag("--threads"), default=THREADS,
                   help=f"torch CPU threads (default {THREADS}, as the published table: the "
                   "fine-tuning's sums, and so its numbers, depend on the thread count)")
    p.add_argument("--check", type=Path, default=None, metavar="RESULTS_MD",
                   help="compare the printed table with the one in this published results file "
                   "(docs/results/demo.md); exit 1 with a diff when they differ")
    p.add_argument("--publish", action="store_true",
                   help="also write the table and figures into docs/results/ (with provenance)")
    return p


def prune_all(args: argparse.Namespace) -> None:
    """Run ``crisp prune`` once per scheme into ``<out>/<scheme>/``."""
    if not CHECKPOINT.is_file():
        raise UserError(f"missing {CHECKPOINT}: make it with 'crisp train --model {MODEL} "
                        f"--data glyph100 --epochs 6 --seed 0 --out {CHECKPOINT}'")
    for scheme in SCHEMES:
        print(f"\n== pruning {MODEL} for classes {args.classes} with {scheme}")
        status = crisp_main([
            "prune", "--model", MODEL, "--checkpoint", str(CHECKPOINT), "--data", "glyph100",
            "--classes", args.classes, "--scheme", scheme, "--density", str(args.density),
            "--block", str(args.block), "--step", str(args.step), "--epochs", str(args.epochs),
            "--n-per-class", str(args.n_per_class), "--seed", str(args.seed),
            "--out", str(args.out / scheme),
        ])
        if status:
            raise SystemExit(status)


def simulate_all(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate every scheme's compressed file; per-layer frame and one summary row per scheme."""
    hw = load_hardware(args.hw)
    frames, rows = [], []
    for scheme in SCHEMES:
        folder = run_folder.check_run(args.out / scheme)
        layers, descriptors = load_workload(str(folder / "pruned.safetensors"))
        frame = simulate(layers, hw, descriptors).frame
        frame["layer_scheme"] = frame["scheme"]
        frame["scheme"], frame["model"] = scheme, MODEL
        write_frame(frame, folder / "simulation.csv")
        frames.append(frame)
        record = json.loads((folder / "record.json").read_text())
        final = record["rounds"][-1]
        rows.append({
            "scheme": scheme, "classes": len(record["classes"]), "density": final["density"],
            "top1": final["top1"], "top5": final["top5"],
            "latency_us": frame.latency_us.sum(), "energy_uj": frame.energy_total_pj.sum() / 1e6,
            "compute_cycles": frame.compute_cycles.sum(), "stall_cycles": frame.stall_cycles.sum(),
        })
    summary = pd.DataFrame(rows)
    dense = summary.set_index("scheme").loc["dense"]
    summary["speedup_vs_dense"] = dense.latency_us / summary.latency_us
    summary["energy_saving_vs_dense"] = dense.energy_uj / summary.energy_uj
    hybrid = summary.set_index("scheme").loc["hybrid"]
    summary["hybrid_speedup"] = summary.latency_us / hybrid.latency_us
    return pd.concat(frames, ignore_index=True), summary


def figures(layers: pd.DataFrame, summary: pd.DataFrame,
            context: str | None = None) -> dict[str, Figure]:
    """The main job's figures by name: normalised latency/energy, energy breakdown,
    accuracy-latency.

    ``context`` completes each figure's title (e.g. the printed table's title line: model, data
    set, user classes, seed, target density, hardware); default what the frames tell (model, data
    set, user classes, the array's processing elements).
    """
    if context is None:
        context = (f"{MODEL} on glyph100, {summary.classes.iloc[0]} user classes, "
                   f"{layers.pes.iloc[0]}-PE array")
    accuracy = summary.rename(columns={"top1": "accuracy"})
    return {
        "latency": plots.normalised_bars(layers, "latency_us", context),
        "energy": plots.normalised_bars(layers, "energy_total_pj", context),
        "energy_breakdown": plots.energy_breakdown(layers, context),
        "accuracy_vs_latency": plots.accuracy_pareto(accuracy, context),
    }


def write_figures(layers: pd.DataFrame, summary: pd.DataFrame, folder: Path,
                  context: str | None = None) -> list[Path]:
    """Write `figures` into ``folder`` (PNG and PDF each)."""
    return [path for name, fig in figures(layers, summary, context).items()
            for path in plots.save(fig, folder / name)]


def table(summary: pd.DataFrame, args: argparse.Namespace) -> str:
    """The side-by-side table the demo prints (and publishes): a title line, then one row per
    scheme."""
    shown = summary.drop(columns=["compute_cycles", "stall_cycles"]).round(3)
    return (f"== {MODEL} on glyph100, {summary.classes.iloc[0]} user classes (seed {args.seed}), "
            f"target density {args.density}, simulated on {args.hw}\n"
            + shown.to_string(index=False))


def published_table(path: Path) -> str:
    """The table inside a published ``demo.md`` (its ``text`` code block)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"--check {path}: cannot read it ({err.strerror})") from None
    match = re.search(r"```text\n(.*?)\n```", text, re.S)
    if match is None:
        raise UserError(f"--check {path}: no ```text block holding the demo's table")
    return match.group(1)


def check(printed: str, expected: str, path: Path) -> int:
    """0 if ``printed`` is ``expected``, the table published in ``path``, else 1 after printing
    a diff."""
    if printed == expected:
        print(f"the table is the one published in {path}, digit for digit")
        return 0
    diff = difflib.unified_diff(expected.splitlines(), printed.splitlines(), str(path),
                                "this run", lineterm="")
    print("\n".join(["the table differs from the published one:", *diff]), file=sys.stderr)
    return 1


def check_portable() -> None:
    """Refuse to check or publish the table unless torch runs its portable kernels (`PORTABLE`:
    torch was imported before this module could ask for them, e.g. by a caller in the same
    process).

    Raises:
        UserError: torch's CPU capability is not ``DEFAULT``.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        raise UserError(f"torch runs its {capability} CPU kernels, not the portable ones the "
                        "published table is made with: run 'python -m crisp_sim.demo' in a fresh "
                        "process (ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE)")


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Prune with every scheme, simulate each, print the side-by-side table, write figures."""
    args = build_parser().parse_args(argv)
    shown_argv = sys.argv[1:] if argv is None else argv
    results = Results("demo", shlex.join(["python", "-m", "crisp_sim.demo", *shown_argv]),
                      args.publish)
    expected = published_table(args.check) if args.check else None  # fail before the work
    if args.check or args.publish:
        check_portable()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with torch.backends.mkldnn.flags(enabled=False), torch.backends.nnpack.flags(enabled=False):
            prune_all(args)
    finally:
        torch.set_num_threads(threads)
    layers, summary = simulate_all(args)
    write_frame(summary, args.out / "summary.csv")
    printed = table(summary, args)
    print()
    results.add(f"```text\n{printed}\n```")
    context = printed.splitlines()[0].removeprefix("== ")
    written = write_figures(layers, summary, args.out / "figures", context)
    if args.publish:
        for name, fig in figures(layers, summary, context).items():
            results.figure(fig, f"demo_{name}")
    print(f"\nwrote {args.out / 'summary.csv'}, per-scheme runs in {args.out}/<scheme>/, "
          f"figures: {', '.join(str(p) for p in written if p.suffix == '.png')}")
    results.write()
    return check(printed, expected, args.check) if args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
