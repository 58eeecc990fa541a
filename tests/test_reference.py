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
       st.integers(1, 40), st.sampled_from(["ws", "os", "is"]), st.sampled_from([1, 2]),
       st.integers(0, 2**32 - 1))
def test_engine_matches_reference(
    R: int, C: int, P: int, K: int, N: int, dataflow: str, buffers: int, seed: int
) -> None:
    """With two stationary buffers (WS, IS) the reference runs the folds as one pipeline whose
    registers check every value's fold (`accel_sim.reference`)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-8, 8, (P, K))
    w = rng.integers(-8, 8, (N, K))
    ref = run_reference(a, w, R, C, dataflow, buffers)
    np.testing.assert_array_equal(ref.output, a @ w.T)  # the dataflow computes the GEMM
    hw = build_hardware({"array": {"rows": R, "cols": C, "dataflow": dataflow, "psum_bits": 8,
                                   "weight_buffers": buffers}})
    run = run_scalesim(GemmLayer("x", "conv", P=P, K=K, N=N), hw)
    c = run.counts
    assert run.compute_cycles == ref.cycles
    assert c[("ifmap_sram", "read")] == ref.ifmap_sram_reads
    assert c[("filter_sram", "read")] == ref.filter_sram_reads
    assert c[("ofmap_sram", "write")] == ref.ofmap_sram_writes
    assert c[("ofmap_sram", "psum_read")] == ref.psum_reads


def test_double_buffered_folds_hide_the_load_under_the_stream() -> None:
    """One GEMM of F folds each streaming T steps: 2R + C - 2 + F*T + (F-1)*max(0, R - T)
    cycles elapsed with two buffers, F*(2R + C - 2 + T) with one (minus one, SCALE-Sim's count)."""
    R, C = 4, 3
    for P in (1, 3, 4, 9):  # T below, at and above R
        a = np.ones((P, 10), np.int64)
        w = np.ones((5, 10), np.int64)  # 3 row folds x 2 column folds
        one, two = (run_reference(a, w, R, C, "ws", b).cycles for b in (1, 2))
        assert one == 6 * (2 * R + C - 2 + P) - 1
        assert two == 2 * R + C - 2 + 6 * P + 5 * max(0, R - P) - 1
