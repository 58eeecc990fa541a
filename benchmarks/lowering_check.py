"""Lowering check: every zoo model's lowered MACs against torch's FLOP counter, and its cost.

For each model ``crisp.models.list_models()`` names (the small networks and every torchvision
classifier), built for its shapes (`crisp.models.build_for_shapes`: on PyTorch's meta device,
or on the CPU for the RegNets) at its default input (batch 1): the GEMMs the
lowering finds (`crisp.lowering.trace_gemms`: graph capture, or the forward-hook fallback when
``torch.export`` cannot capture the model), their MACs against ``torch.utils.flop_counter``'s
(2 FLOPs a MAC; attention on its math backend, so that the counter sees its two matmuls), the
MACs forward hooks on Conv2d/Linear modules alone would find, and the lowering's wall time.
Then ViT-B/16 on the simulator: ``accel-sim run vit_b_16`` (dense, edge-32x32, the mapper)
timed in-process after one warm-up run (the mapper's memo cleared, then warm), and the whole
command in a fresh process.
``--publish`` writes ``docs/results/lowering_check.md``; exit status 1 if a model's lowered
MACs are more than 1 % from the counter's.

Run: ``.venv/bin/python benchmarks/lowering_check.py --publish`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from accel_sim.hardware import load_hardware
from accel_sim.lowering import lower_model
from accel_sim.mapper import clear_memo
from accel_sim.simulate import simulate
from crisp.errors import exit_on_user_error
from crisp.graph_gemms import capture_gemms
from crisp.lowering import hook_gemms
from crisp.models import build_for_shapes, input_shape, list_models
from crisp_sim.publish import Results, markdown_table, script_command

TOLERANCE = 0.01
"""Largest relative difference of lowered MACs from the counter's that passes."""


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None,
                   help="comma-separated zoo models (default: every one list_models names)")
    p.add_argument("--publish", action="store_true", help="write docs/results/lowering_check.md")
    return p


def counter_macs(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """MACs of one forward pass by torch's FLOP counter (math attention)."""
    device = next(model.parameters()).device
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model.eval()(torch.zeros((1, *shape), device=device))
    return fc.get_total_flops() // 2


def check(name: str) -> tuple[list[object], bool]:
    """One model's row and whether it passes."""
    model = build_for_shapes(name)
    device = next(model.parameters()).device
    shape = input_shape(name)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            layers = capture_gemms(model.eval(), torch.zeros((1, *shape), device=device),
                                   weights=False)
        path = "graph"
    except Exception as err:  # what trace_gemms falls back on, with its warning
        print(f"{name}: export failed ({type(err).__name__}), forward hooks", file=sys.stderr)
        layers, path = hook_gemms(model, shape, weights=False), "hooks"
    seconds = time.perf_counter() - start
    macs = sum(g["P"] * g["K"] * g["N"] * g["groups"] for g in layers)
    hooked = sum(g["P"] * g["K"] * g["N"] * g["groups"]
                 for g in hook_gemms(model, shape, weights=False))
    counted = counter_macs(model, shape)
    ratio = macs / counted
    matmuls = sum(g["kind"] == "matmul" for g in layers)
    row = [name, path, len(layers), matmuls, f"{macs / 1e9:.4f}", f"{counted / 1e9:.4f}",
           f"{ratio:.4f}", f"{hooked / counted:.3f}", f"{seconds:.2f}"]
    return row, abs(ratio - 1) <= TOLERANCE


def vit_speed() -> str:
    """``accel-sim run vit_b_16``'s cost: lowering, a warm simulation, the fresh command."""
    model = build_for_shapes("vit_b_16")
    start = time.perf_counter()
    layers = lower_model(model, input_shape("vit_b_16"), weights=False)
    lowering = time.perf_counter() - start
    hw = load_hardware("edge-32x32")
    simulate(layers, hw)  # the JIT warm
    clear_memo()
    start = time.perf_counter()
    report = simulate(layers, hw)
    search = time.perf_counter() - start
    start = time.perf_counter()
    simulate(layers, hw)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "accel_sim.cli", "run", "vit_b_16"], check=True,
                   capture_output=True)
    command = time.perf_counter() - start
    rows = [["lowering (graph capture, shapes only)", f"{lowering:.2f}"],
            ["simulation, the mapper searching every layer (its memo cleared, JIT warm)",
             f"{search:.3f}"],
            ["simulation, the mapper's memo warm (a second run of the same layers)",
             f"{warm:.3f}"],
            ["`accel-sim run vit_b_16`, a fresh process (imports, lowering, simulation)",
             f"{command:.2f}"]]
    return (f"ViT-B/16 (batch 1, 224x224): {len(layers)} GEMMs, "
            f"{sum(la.macs for la in layers) / 1e9:.3f} GMACs, "
            f"{report.totals.latency_us:,.0f} µs per inference on edge-32x32.\n\n"
            + markdown_table(["step", "wall time (s)"], rows))


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Check every model, time ViT-B/16, print and (``--publish``) write the results."""
    args = build_parser().parse_args(argv)
    names = args.models.split(",") if args.models else list_models()
    results = Results("lowering_check", script_command(), args.publish)
    rows, failed = [], []
    for name in names:
        row, ok = check(name)
        print(" ".join(map(str, row)), file=sys.stderr, flush=True)
        rows.append(row)
        if not ok:
            failed.append(name)
    head = ["model", "path", "GEMMs", "of which matmul", "lowered GMACs", "counter GMACs",
            "lowered ÷ counter", "hooks alone ÷ counter", "lowering s"]
    results.add(f"Every zoo model at its default input, batch 1, built for its shapes: lowered "
                f"MACs against `torch.utils.flop_counter` (math attention). {len(rows)} models; "
                f"within {TOLERANCE:.0%} of the counter: {len(rows) - len(failed)}"
                + (f"; not: {', '.join(failed)}." if failed else ".")
                + " `path`: graph capture (`torch.export`) or the forward-hook fallback; "
                "`hooks alone ÷ counter`: the share forward hooks on Conv2d/Linear modules "
                "find (what functional GEMMs, attention above all, add).\n\n"
                + markdown_table(head, rows))
    results.add(vit_speed())
    results.write()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
