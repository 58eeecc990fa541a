"""Speed of a design-space sweep on Dask, per worker count: points per second, client share.

The grid: 3 models (resnet50, vgg16_bn, mobilenet_v2) x 6 schemes x 10 arrays (8x8 to 256x256
square, plus 8x32, 32x8, 64x256, 256x64) x 3 dataflows = 540 design points at 25 % density,
synthetic masks (seed 0), block 32.

For each worker count: start a LocalCluster of that many single-threaded worker processes (its
start-up is timed apart), warm it up (not timed): a small sweep through the client, and in every
worker a small network simulated for each scheme and dataflow (imports, torch's lowering, Numba
kernels loaded from their cache; a worker the small sweep did not reach would otherwise pay these
in the timed run), then time the full sweep from an empty result folder on the warm cluster, and
print

- wall seconds and design points per second;
- the client's share of the wall time: seconds in its own code (planning, submitting, writing
  fragments, assembling and writing the final table) against seconds waiting on the cluster;
- CPU seconds of the client process and of all workers together (the machine may be shared:
  wall times are noisy, CPU times much less so);
- on Linux, the CPU seconds the hypervisor gave other guests while this one's cores wanted to
  run (steal time in ``/proc/stat``, over all of this machine's cores): on a shared virtual
  machine the wall time grows by up to that over the cores, with the same work done.

``--publish`` writes the table to ``docs/results/sweep_speed.md``.

    python benchmarks/sweep_speed.py --workers 1,2,4,8,16
    python benchmarks/sweep_speed.py --mappings best,scalesim      # also SCALE-Sim's schedule
    python benchmarks/sweep_speed.py --scheduler tcp://host:8786   # an existing cluster
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from accel_sim.mapper import MAPPINGS, clear_memo
from accel_sim.sweep import SweepRun, evaluate_group, execute_sweep, grid, local_cluster
from crisp.errors import UserError
from crisp_sim.publish import Results, markdown_table, script_command

MODELS = ("resnet50", "vgg16_bn", "mobilenet_v2")
SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
ARRAYS = [(s, s) for s in (8, 16, 32, 64, 128, 256)] + [(8, 32), (32, 8), (64, 256), (256, 64)]
DATAFLOWS = ("ws", "os", "is")
BLOCK = 32
HEADER = ("mapping", "workers", "wall", "points/s", "client's own code", "CPU: client process",
          "CPU: workers", "stolen by the host", "tasks")


def _cpu() -> float:
    return time.process_time()


def stolen_cpu(stat_path: str = "/proc/stat") -> float | None:
    """CPU seconds stolen from this machine's cores so far: the steal column (the eighth
    number, counted in clock ticks) of the ``cpu`` line of Linux's ``/proc/stat``; None
    without it. With ``--scheduler`` it is the client's machine, not the workers'."""
    try:
        with open(stat_path) as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def _worker_cpu(client: object) -> float:
    """CPU seconds used so far by all the cluster's worker processes."""
    return sum(client.run(_cpu).values())


def _small_grid(mapping: str) -> list:
    """The warm-up grid: the small network for every scheme and dataflow on an 8x8 array."""
    return grid(["resnet_small"], SCHEMES, [0.25], [(8, 8)], DATAFLOWS, [BLOCK], mapping=mapping)


def _warm_up(mapping: str) -> None:
    """Simulate the warm-up grid in this process, one mask group at a time, then forget the
    memoised runs (the timed sweep starts without them)."""
    points = _small_grid(mapping)
    for scheme in SCHEMES:
        evaluate_group([p for p in points if p.scheme == scheme])
    clear_memo()


def measure(address: str, points: list, progress: bool
            ) -> tuple[SweepRun, float, float, float | None]:
    """Warm the cluster at ``address`` up, then time the sweep of ``points`` on it.

    Returns:
        (the sweep's timings, client CPU seconds, workers' CPU seconds, CPU seconds stolen
        from this machine meanwhile or None where unknown).
    """
    from dask.distributed import Client

    mapping = points[0].mapping
    with Client(address) as client, tempfile.TemporaryDirectory() as warm, \
            tempfile.TemporaryDirectory() as out:
        execute_sweep(_small_grid(mapping), warm, address, progress=False)
        client.run(_warm_up, mapping)
        workers, mine, stolen = _worker_cpu(client), _cpu(), stolen_cpu()
        run = execute_sweep(points, out, address, progress=progress)
        after = stolen_cpu()
        steal = None if stolen is None or after is None else after - stolen
        return run, _cpu() - mine, _worker_cpu(client) - workers, steal


def row(mapping: str, workers: str, run: SweepRun, client_cpu: float, worker_cpu: float,
        stolen: float | None) -> list[str]:
    """One row of the table (`HEADER`)."""
    steal = "unknown" if stolen is None else f"{stolen:.1f} s"
    return [mapping, workers, f"{run.wall_s:.1f} s", f"{run.points / run.wall_s:.1f}",
            f"{run.client_s:.2f} s ({run.client_s / run.wall_s:.1%})", f"{client_cpu:.1f} s",
            f"{worker_cpu:.1f} s", steal, str(run.tasks)]


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated LocalCluster sizes to time (default 1,2)")
    parser.add_argument("--scheduler", default=None,
                        help="time one sweep on this existing Dask scheduler instead")
    parser.add_argument("--progress", action="store_true", help="show the sweep's tqdm bar")
    parser.add_argument("--mappings", default="best",
                        help="comma-separated: best (the mapper searches every layer, the "
                             "default) and/or scalesim (SCALE-Sim's fixed schedule)")
    parser.add_argument("--publish", action="store_true",
                        help="write docs/results/sweep_speed.md")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Time the sweep per mapping and worker count; print (and publish) the table."""
    args = build_parser().parse_args(argv)
    mappings = args.mappings.split(",")
    for mapping in mappings:
        if mapping not in MAPPINGS:
            raise UserError(f"--mappings {mapping!r}: allowed {', '.join(MAPPINGS)}")
    results = Results("sweep_speed", script_command(), args.publish)
    size = len(MODELS) * len(SCHEMES) * len(ARRAYS) * len(DATAFLOWS)
    results.add(f"{size} design points: {len(MODELS)} models ({', '.join(MODELS)}) x "
                f"{len(SCHEMES)} schemes x {len(ARRAYS)} arrays x {len(DATAFLOWS)} dataflows at "
                f"density 0.25, synthetic masks (seed 0), B = {BLOCK}, on a warm Dask cluster "
                "of single-threaded worker processes, from an empty result folder. `client's own "
                "code`: seconds the client spends planning, submitting and writing (its share of "
                "the wall time); CPU seconds are process times; `stolen by the host`: CPU "
                "seconds this virtual machine's cores waited while the hypervisor ran other "
                "guests (`/proc/stat` steal), a measure of how noisy the wall time is.")
    rows = []
    for mapping in mappings:
        points = grid(MODELS, SCHEMES, [0.25], ARRAYS, DATAFLOWS, [BLOCK], mapping=mapping)
        if args.scheduler:
            rows.append(row(mapping, args.scheduler, *measure(args.scheduler, points,
                                                               args.progress)))
            print(" | ".join(rows[-1]), flush=True)
            continue
        for count in (int(w) for w in args.workers.split(",")):
            with local_cluster(count) as cluster:
                rows.append(row(mapping, str(count), *measure(cluster.scheduler_address, points,
                                                              args.progress)))
            print(" | ".join(rows[-1]), flush=True)
    results.add(markdown_table(HEADER, rows))
    results.write()


if __name__ == "__main__":
    main()
