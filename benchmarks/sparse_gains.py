"""Sparse gains: latency and energy of every scheme on WS arrays at several densities.

For each network (ResNet-50, VGG-16-BN, MobileNetV2; batch 1, 224x224), density (50, 25, 12.5,
6.25 %) and array (edge-32x32, cloud-128x128 presets: 2:4 multiplexers, block skipping, zero
gating, bitmap-compressed unstructured weights), prints total latency (µs), energy (µJ) and the
speed-up of hybrid over dense, unstructured and channel. Synthetic masks on the pruner's layer
plan (`accel_sim.sparsity.synthetic_network`), seed 0, block 32, hybrid = 2:4 inside blocks.
Masks are drawn once and reused on both arrays. Every scheme is mapped at its best
(``--mapping best``, the default) or with SCALE-Sim's fixed schedule.
``--publish`` writes ``docs/results/sparse_gains.md`` for the default networks, else
``docs/results/sparse_gains_<models joined by _>.md``: ``--models vit_b_16`` gives ViT-B/16's
table (attention's activation GEMMs stay dense under every scheme; they have no weights).

    python benchmarks/sparse_gains.py [--models resnet50,vgg16_bn,mobilenet_v2] [--publish]
"""

from __future__ import annotations

import argparse

from accel_sim.hardware import load_hardware
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import PLANS, kept_fraction, synthetic_network
from accel_sim.sweep import Network
from accel_sim.workload import GemmLayer
from crisp_sim.publish import Results, markdown_table, script_command

SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")
DENSITIES = (0.5, 0.25, 0.125, 0.0625)
MODELS = "resnet50,vgg16_bn,mobilenet_v2"
BLOCK = 32
PRESETS = ("edge-32x32", "cloud-128x128")
PLAN = "pruner"
PRUNED = ("unstructured", "channel", "block", "hybrid")
"""The schemes whose kept density can differ from the target (`off_target`)."""


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS, help=f"comma-separated (default {MODELS})")
    parser.add_argument("--mapping", default="best", help="best (default) or scalesim")
    parser.add_argument("--publish", action="store_true",
                        help="write docs/results/sparse_gains.md")
    return parser


def networks(layers: list[GemmLayer], schemes: tuple[str, ...],
             density: float) -> dict[str, Network]:
    """The synthetic network of every scheme at ``density`` (`PLAN`, seed 0, B = `BLOCK`)."""
    return {s: synthetic_network(layers, s, density, seed=0, block=BLOCK, plan=PLAN)
            for s in schemes}


def off_target(layers: list[GemmLayer], nets: dict[str, Network], density: float) -> list[str]:
    """``"<scheme> at <density> keeps <kept>"`` for each network of ``nets`` (by scheme, drawn
    from ``layers``) that keeps another density than ``density``, by more than 1 % of it: block
    and hybrid where the plan's fixed layers put the target out of reach, channel where its own
    rule keeps more (whole first-layer inputs and classifier outputs, channel counts rounded
    up). Dense and N:M only, whose density is fixed, are skipped."""
    missed = []
    for scheme in PRUNED:
        share = kept_fraction(layers, *nets[scheme])
        if abs(share - density) > 0.01 * density:
            missed.append(f"{scheme} at {density:.2%} keeps {share:.2%}")
    return missed


def off_target_note(missed: list[str]) -> str:
    """The note under a table naming its cells at another density than their row's target."""
    return ("\n\nWhere a network keeps another density than its row's target (by more than 1 % "
            "of it), its cells are at the density it keeps: " + "; ".join(missed) + ".") \
        if missed else ""


def table(model: str, mapping: str = "best") -> str:
    """One network's Markdown table (deterministic: no wall times) and its `off_target_note`."""
    layers = load_layers(model)
    arrays = [load_hardware(p) for p in PRESETS]
    rows, missed = [], []
    for density in DENSITIES:
        nets = networks(layers, SCHEMES, density)
        missed += off_target(layers, nets, density)
        for hw in arrays:
            totals = {s: simulate(nets[s][0], hw, nets[s][1], mapping=mapping).totals
                      for s in SCHEMES}
            cells = [f"{t.latency_us:,.0f} / {t.energy_total_pj / 1e6:,.0f}"
                     for t in totals.values()]
            hyb = totals["hybrid"].total_cycles
            ratios = [f"{totals[b].total_cycles / hyb:.2f}x"
                      for b in ("dense", "unstructured", "channel")]
            rows.append([hw.name, f"{density:.2%}", *cells, *ratios])
    head = ["array", "density", *(f"{s} µs / µJ" for s in SCHEMES),
            *(f"{b} ÷ hybrid" for b in ("dense", "unstructured", "channel"))]
    return (f"#### {model}\n\n" + matmul_note(layers) + markdown_table(head, rows)
            + off_target_note(missed))


def matmul_note(layers: list[GemmLayer]) -> str:
    """What a network's matmuls of two activations are (none: nothing)."""
    matmuls = [la for la in layers if la.kind == "matmul"]
    if not matmuls:
        return ""
    share = sum(la.macs for la in matmuls) / sum(la.macs for la in layers)
    return (f"Its {len(matmuls)} matmuls of two activations (attention's Q K^T and "
            f"softmax(.) V, {share:.1%} of its MACs) have no weights: every scheme runs them "
            "dense, and densities count weights only.\n\n")


def main(argv: list[str] | None = None) -> None:
    """Print (and with ``--publish`` write) one Markdown table per network."""
    args = build_parser().parse_args(argv)
    name = "sparse_gains" if args.models == MODELS else \
        "sparse_gains_" + args.models.replace(",", "_")
    results = Results(name, script_command(), args.publish)
    results.add(f"Every scheme mapped with `--mapping {args.mapping}`; synthetic masks: "
                f"{PLANS[PLAN]}; seed 0, B = {BLOCK}, hybrid = 2:4 inside blocks. Cells: "
                "latency µs / energy µJ per inference (batch 1, 224x224). The last three "
                "columns: the other scheme's latency over hybrid's (above 1: hybrid is faster).")
    for model in args.models.split(","):
        results.add(table(model, args.mapping))
    results.write()


if __name__ == "__main__":
    main()
