"""Fuzzing benchmark: outcome counts of every fuzzer, and the cost of lowering for shapes only.

Runs the command-line fuzzers of ``benchmarks/fuzz_cli.py`` (argv of both CLIs, hardware files,
topology files) and the compressed-file fuzzer of ``benchmarks/fuzz_compressed.py``, each from
``--seed``, and counts every case's outcome; then times ``accel-sim layers`` on a large network
in a fresh process and reads its peak resident memory (``getrusage`` of the child).
``--publish`` writes ``docs/results/fuzz.md``; exit status 1 if any case failed.

Run: ``.venv/bin/python benchmarks/fuzz.py --publish`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fuzz_cli
import fuzz_compressed

from crisp.errors import exit_on_user_error
from crisp_sim.publish import Results, markdown_table, script_command

#: The shape-only lowerings timed: (arguments of ``accel-sim layers``).
LAYERS = (("vgg16_bn", "--batch", "64"), ("vgg16_bn", "--resolution", "1024"),
          ("resnet50", "--batch", "64"))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="seeds every fuzzer (default 0)")
    p.add_argument("--argv", type=int, default=400, help="command lines (default 400)")
    p.add_argument("--hardware", type=int, default=300, help="hardware files (default 300)")
    p.add_argument("--topology", type=int, default=300, help="topology files (default 300)")
    p.add_argument("--compressed", type=int, default=400,
                   help="compressed-file mutants (default 400)")
    p.add_argument("--publish", action="store_true", help="write docs/results/fuzz.md")
    return p


def cli_counts(args: argparse.Namespace, folder: Path) -> tuple[str, int]:
    """The command-line fuzzers' table and their failure count."""
    rows, failed = [], 0
    for name, make, count in (("argv", fuzz_cli.cli_cases, args.argv),
                              ("hardware file", fuzz_cli.hardware_cases, args.hardware),
                              ("topology file", fuzz_cli.topology_cases, args.topology)):
        work = folder / name.replace(" ", "-")
        work.mkdir()
        counts, failures = fuzz_cli.run_cases(make(args.seed, count, work), work)
        for case, outcome, err in failures:
            print(f"FAILED {outcome}: {case.program} {case.argv} ({case.mutation}): {err}",
                  file=sys.stderr)
        failed += len(failures)
        rows.append([name, count, *(counts[o] for o in fuzz_cli.OUTCOMES)])
    return markdown_table(["fuzzer", "cases", *fuzz_cli.OUTCOMES], rows), failed


def compressed_counts(args: argparse.Namespace, folder: Path) -> tuple[str, int]:
    """The compressed-file fuzzer's table and its failure count."""
    original = fuzz_compressed.small_file(folder / "small.safetensors")
    results = fuzz_compressed.fuzz(original, args.seed, args.compressed)
    counts = fuzz_compressed.tally(results)
    failed = sum(counts.get(o, 0) for o in fuzz_compressed.FAILURES)
    rows = [[kind, *(sum(r.kind == kind and r.outcome == o for r in results)
                     for o in fuzz_compressed.OUTCOMES)]
            for kind in sorted({r.kind for r in results})]
    rows.append(["all", *(counts.get(o, 0) for o in fuzz_compressed.OUTCOMES)])
    return markdown_table(["mutation", *fuzz_compressed.OUTCOMES], rows), failed


#: Runs its arguments as a command and prints the command's peak resident memory (KiB): each
#: measurement in its own parent, since a process' children's peak is their maximum so far.
_PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
         "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def layers_cost() -> str:
    """Wall time and peak memory of ``accel-sim layers`` for each of `LAYERS`, each in a fresh
    process (the import of torch included)."""
    rows = []
    for argv in LAYERS:
        start = time.perf_counter()
        peak = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m",
                               "accel_sim.cli", "layers", *argv],
                              check=True, capture_output=True, text=True).stdout
        seconds = time.perf_counter() - start
        rows.append([f"`accel-sim layers {' '.join(argv)}`", f"{seconds:.2f}",
                     f"{int(peak) / 1024:.0f}"])
    return markdown_table(["command", "wall time (s)", "peak memory (MiB)"], rows)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Run every fuzzer, time the lowering, print and (``--publish``) write the results."""
    args = build_parser().parse_args(argv)
    results = Results("fuzz", script_command(), args.publish)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cli_table, cli_failed = cli_counts(args, folder)
        results.add(f"Command-line fuzzers, seed {args.seed}: cases per outcome "
                    "(`benchmarks/fuzz_cli.py` defines each).\n\n" + cli_table)
        table, compressed_failed = compressed_counts(args, folder)
        results.add(f"Compressed-file fuzzer, seed {args.seed}: mutants of a small pruned "
                    "file per kind and outcome (`benchmarks/fuzz_compressed.py` defines "
                    "each).\n\n" + table)
    results.add("Lowering for shapes only (on PyTorch's meta device), each command in a fresh "
                "process on this machine.\n\n" + layers_cost())
    results.write()
    return 1 if cli_failed + compressed_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
