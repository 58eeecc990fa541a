"""The main job behind ``make demo``: what the toolkit does, end to end, on embedded data.

Run as ``python -m crisp.demo`` (no flags, no network).
"""

from __future__ import annotations

from accel_sim.cli import main as accel_sim_main


def main() -> int:
    """Print the GEMM lowering of the small network and of ResNet-50."""
    for source in ("resnet_small", "resnet50"):
        print(f"== GEMM layers of {source}")
        accel_sim_main(["layers", source])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
