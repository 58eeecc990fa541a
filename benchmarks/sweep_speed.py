"""Speed of a design-space sweep on Dask: a 1,000-point sweep on this machine.

3 models x 6 schemes x 19 arrays (8x8 to 256x256, square and rectangular) x 3 dataflows
= 1,026 points at 25 % density, synthetic masks. A first, small sweep warms up the Numba cache
(and is not timed); the timed sweep then starts from an empty result folder. Prints wall time and
points per second.

    python benchmarks/sweep_speed.py [--workers 2] [--scheduler tcp://host:8786]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from accel_sim.sweep import grid, run_sweep

MODELS = ("resnet50", "vgg16_bn", "mobilenet_v2")
SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
SQUARE = [(s, s) for s in (8, 16, 32, 64, 128, 256)]
RECTANGULAR = [(8, 32), (32, 8), (16, 64), (64, 16), (32, 64), (64, 32), (32, 128), (128, 32),
               (64, 128), (128, 64), (64, 256), (256, 64), (128, 256)]
DATAFLOWS = ("ws", "os", "is")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: cores)")
    parser.add_argument("--scheduler", default=None, help="existing Dask scheduler address")
    args = parser.parse_args()

    points = grid(MODELS, SCHEMES, [0.25], SQUARE + RECTANGULAR, DATAFLOWS)
    with tempfile.TemporaryDirectory() as warm, tempfile.TemporaryDirectory() as out:
        run_sweep(grid(["resnet_small"], SCHEMES, [0.25], [(8, 8)], DATAFLOWS), warm,
                  args.scheduler, args.workers, progress=False)
        start = time.perf_counter()
        frame = run_sweep(points, out, args.scheduler, args.workers)
        wall = time.perf_counter() - start
    print(f"{len(points)} design points ({frame.shape[0]} layer rows) in {wall:.1f} s: "
          f"{len(points) / wall:.1f} points/s")


if __name__ == "__main__":
    main()
