"""The simulator's torch-free path: numpy patterns equal the torch ones, and no torch import."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from accel_sim.sparsity import nm_for_density, synthetic
from accel_sim.workload import GemmLayer
from crisp import compressed, pattern_core, patterns

ROOT = Path(__file__).resolve().parents[1]


def _old_synthetic(layer: GemmLayer, scheme: str, density: float, rng: np.random.Generator,
                   nm: tuple[int, int] = (2, 4), block: int = 32) -> np.ndarray:
    """The synthetic masks as they were drawn through crisp.patterns' torch API (the oracle)."""
    shape = (layer.groups * layer.N, layer.K)

    def by_rows(pattern) -> np.ndarray:
        mask = np.empty(shape, bool)
        for lo in range(0, shape[0], 256):
            hi = min(shape[0], lo + 256)
            scores = torch.from_numpy(rng.random((hi - lo, shape[1]), dtype=np.float32))
            mask[lo:hi] = np.asarray(pattern(scores))
        return mask

    if scheme == "unstructured":
        return by_rows(lambda s: s < density)
    if scheme == "nm":
        n, m = nm_for_density(density)
        return by_rows(lambda s: patterns.nm_mask(s, n, m))
    blocks = torch.from_numpy(rng.random((-(-shape[0] // block), -(-shape[1] // block))))
    block_density = density if scheme == "block" else min(1.0, density * nm[1] / nm[0])
    keep = patterns.blocks_to_keep(torch.empty(0, shape[1]), block, block_density)
    mask = patterns.expand_blocks(patterns.block_bitmap(blocks, 1, keep), block, shape).numpy()
    if scheme == "block":
        return mask
    return mask & by_rows(lambda s: patterns.nm_mask(s, *nm))


LAYERS = [GemmLayer("conv", "conv", P=9, K=147, N=64),
          GemmLayer("dw", "depthwise", P=4, K=9, N=1, groups=40),
          GemmLayer("fc", "linear", P=1, K=600, N=300)]  # > 256 rows: two chunks


def _fresh_python(script: str, folder: Path) -> str:
    """What ``script`` prints in a fresh interpreter run from ``folder`` with this checkout on
    its path (it must exit 0)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=folder, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize(("scheme", "density", "nm", "block"), [
    ("unstructured", 0.3, (2, 4), 32), ("nm", 0.5, (2, 4), 32), ("nm", 0.125, (2, 4), 32),
    ("block", 0.25, (2, 4), 8), ("block", 0.6, (2, 4), 32), ("hybrid", 0.25, (2, 4), 16),
    ("hybrid", 0.125, (1, 4), 4),
])
def test_synthetic_masks_are_bit_identical_to_the_torch_path(scheme, density, nm, block) -> None:
    new_rng, old_rng = np.random.default_rng(7), np.random.default_rng(7)
    for layer in LAYERS:
        new = synthetic(layer, scheme, density, new_rng, nm, block).mask
        old = _old_synthetic(layer, scheme, density, old_rng, nm, block)
        assert new.dtype == bool and np.array_equal(new, old), (scheme, layer.name)
    assert new_rng.random() == old_rng.random()  # both consumed the same draws


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 12), k=st.integers(1, 40), b=st.integers(1, 9), seed=st.integers(0, 99),
       ties=st.booleans())
def test_numpy_block_helpers_equal_the_torch_ones(rows, k, b, seed, ties) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, (rows, k)).astype(float) if ties else rng.random((rows, k))
    keep = int(rng.integers(1, math.ceil(k / b) + 1))
    t = torch.from_numpy(scores)
    bitmap = patterns.block_bitmap(t, b, keep)
    expected = patterns.block_scores(t, b).numpy()
    assert np.array_equal(pattern_core.top_k_rows(expected, keep), bitmap.numpy())
    assert np.array_equal(pattern_core.expand_blocks(bitmap.numpy(), b, (rows, k)),
                          patterns.expand_blocks(bitmap, b, (rows, k)).numpy())
    density = float(rng.random()) or 1.0
    assert pattern_core.blocks_per_row(k, b, density) == patterns.blocks_to_keep(t, b, density)


def _tiny_pruned_file(path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 16))
    w = model[3].weight.detach()
    mask = patterns.hybrid_mask(w.abs(), 8, 2, 2, 4)
    with torch.no_grad():
        model[3].weight.mul_(mask)
    compressed.save(model, path, {"3.weight": mask}, {"3": "hybrid"}, 2, 4, 8, (3, 6, 6),
                    dtype="bfloat16")


def _tiny_onnx_file(path: Path) -> None:
    """A conv, a linear with 2:4 zeros and a matmul of two activations, built with onnx only."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    fc = rng.uniform(0.5, 1.5, (16, 8 * 6 * 6)).astype(np.float32)
    fc.reshape(-1, 4)[:, :2] = 0
    nodes = [helper.make_node("Conv", ["x", "conv.weight"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.weight"], ["y"], transB=1),
             helper.make_node("MatMul", ["y", "t"], ["z"], name="/head/MatMul")]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 6, 6]),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, [16, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
                                 "conv.weight"), numpy_helper.from_array(fc, "fc.weight")])
    onnx.save(helper.make_model(graph), str(path))


def test_run_on_topology_pruned_and_onnx_files_imports_no_torch(tmp_path: Path) -> None:
    topology = tmp_path / "topo.csv"
    topology.write_text("Layer, M, N, K, Sparsity,\nfc1, 16, 32, 64, 2:4,\nfc2, 16, 8, 32,\n")
    pruned = tmp_path / "pruned.safetensors"
    _tiny_pruned_file(pruned)
    model = tmp_path / "tiny.onnx"
    _tiny_onnx_file(model)
    shape = "x=2x3x6x6,t=16x4"
    script = (
        "import sys\n"
        "from accel_sim.cli import main\n"
        f"codes = [main(['run', {str(topology)!r}, '--hw', 'edge-32x32']),\n"
        f"         main(['run', {str(pruned)!r}, '--hw', 'edge-32x32']),\n"
        f"         main(['run', {str(model)!r}, '--input-shape', {shape!r}]),\n"
        f"         main(['layers', {str(model)!r}, '--input-shape', {shape!r}])]\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH', loaded, 'CODES', codes)\n"
    )
    out = _fresh_python(script, tmp_path)
    assert "TORCH [] CODES [0, 0, 0, 0]" in out
    assert "the N:M column of" in out and "the real masks of" in out
    assert "weights as masks (2 dense, 1 nm;" in out  # the conv, the matmul; the 2:4 linear


def test_importing_the_packages_and_their_exports_imports_no_torch(tmp_path: Path) -> None:
    """``import crisp`` runs whenever the simulator imports crisp.errors or crisp.pattern_core:
    its exports load lazily. ``from accel_sim import *`` loads every simulator export."""
    script = (
        "import sys\n"
        "import accel_sim, crisp\n"
        "from accel_sim import *\n"
        "assert callable(simulate) and callable(run_sweep)\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH', loaded, 'DASK', 'dask' in sys.modules)\n"
    )
    assert "TORCH [] DASK False" in _fresh_python(script, tmp_path)
