"""Sparse gains: latency and energy of every scheme on WS arrays at several densities.

For each network (ResNet-50, VGG-16-BN, MobileNetV2; batch 1, 224x224), density (50, 25, 12.5,
6.25 %) and array (edge-32x32, cloud-128x128 presets: 2:4 multiplexers, block skipping, zero
gating, bitmap-compressed unstructured weights), prints total latency (us), energy (uJ) and the
speed-up of hybrid over dense, unstructured and channel. Synthetic masks, seed 0, block 32,
hybrid = 2:4 inside blocks. Masks are drawn once and reused on both arrays. Every scheme is
mapped at its best (``--mapping best``, the default) or with SCALE-Sim's fixed schedule.

    python benchmarks/sparse_gains.py [--models resnet50,vgg16_bn,mobilenet_v2] [--mapping best]
"""

from __future__ import annotations

import argparse

from accel_sim.hardware import load_hardware
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import synthetic_network

SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
DENSITIES = (0.5, 0.25, 0.125, 0.0625)


def main() -> None:
    """Print one markdown table per network."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vgg16_bn,mobilenet_v2")
    parser.add_argument("--mapping", default="best", help="best (default) or scalesim")
    args = parser.parse_args()
    arrays = [load_hardware("edge-32x32"), load_hardware("cloud-128x128")]
    for model in args.models.split(","):
        layers = load_layers(model)
        print(f"\n### {model}\n")
        print("| array | density | " + " | ".join(f"{s} us / uJ" for s in SCHEMES)
              + " | hybrid vs dense | vs unstructured | vs channel |")
        print("|" + " --- |" * (len(SCHEMES) + 5))
        for density in DENSITIES:
            nets = {s: synthetic_network(layers, s, density, seed=0) for s in SCHEMES}
            for hw in arrays:
                totals = {s: simulate(nets[s][0], hw, nets[s][1], mapping=args.mapping).totals
                          for s in SCHEMES}
                cells = [f"{t.latency_us:,.0f} / {t.energy_total_pj / 1e6:,.0f}"
                         for t in totals.values()]
                hyb = totals["hybrid"].total_cycles
                ratios = [f"{totals[b].total_cycles / hyb:.2f}x"
                          for b in ("dense", "unstructured", "channel")]
                print(f"| {hw.name} | {density:.2%} | " + " | ".join(cells + ratios) + " |",
                      flush=True)


if __name__ == "__main__":
    main()
