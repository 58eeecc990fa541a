"""The Numba engine against the plain per-cycle reference model: cycles and accesses, exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from accel_sim.hardware import build_hardware
from accel_sim.mapper import run_layer
from accel_sim.reference import run_reference
from accel_sim.workload import GemmLayer


def run_scalesim(layer, hw, sparsity=None):
    """SCALE-Sim's fixed schedule (the semantics these tests pin)."""
    return run_layer(layer, hw, *( [sparsity] if sparsity is not None else []), mapping="scalesim")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 40), st.integers(1, 40),
       st.integers(1, 40), st.sampled_from(["ws", "os", "is"]), st.integers(0, 2**32 - 1))
def test_engine_matches_reference(
    R: int, C: int, P: int, K: int, N: int, dataflow: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-8, 8, (P, K))
    w = rng.integers(-8, 8, (N, K))
    ref = run_reference(a, w, R, C, dataflow)
    np.testing.assert_array_equal(ref.output, a @ w.T)  # the dataflow computes the GEMM
    hw = build_hardware({"array": {"rows": R, "cols": C, "dataflow": dataflow, "psum_bits": 8}})
    run = run_scalesim(GemmLayer("x", "conv", P=P, K=K, N=N), hw)
    c = run.counts
    assert run.compute_cycles == ref.cycles
    assert c[("ifmap_sram", "read")] == ref.ifmap_sram_reads
    assert c[("filter_sram", "read")] == ref.filter_sram_reads
    assert c[("ofmap_sram", "write")] == ref.ofmap_sram_writes
    assert c[("ofmap_sram", "psum_read")] == ref.psum_reads
