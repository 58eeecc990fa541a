"""Dense engine: SCALE-Sim's cycle formula (golden numbers), timeline and counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel_sim.hardware import build_hardware
from accel_sim.mapper import run_layer
from accel_sim.workload import GemmLayer


def run_scalesim(layer, hw, sparsity=None):
    """SCALE-Sim's fixed schedule (the semantics these tests pin)."""
    return run_layer(layer, hw, *( [sparsity] if sparsity is not None else []), mapping="scalesim")


def hw(rows: int, cols: int, dataflow: str, bandwidth: float = math.inf, kib: float = 64):
    return build_hardware({"array": {"rows": rows, "cols": cols, "dataflow": dataflow},
                           "memory": {"dram_bytes_per_cycle": bandwidth, "ifmap_sram_kib": kib,
                                      "filter_sram_kib": kib, "ofmap_sram_kib": kib}})


def scalesim_cycles(P: int, K: int, N: int, R: int, C: int, dataflow: str) -> int:
    """SCALE-Sim v2/v3's 'Total Cycles' formula, as written in its code."""
    sr, sc, t = {"ws": (K, N, P), "is": (K, P, N), "os": (P, N, K)}[dataflow]
    per_fold = (2 * R if dataflow != "os" else R) + C + t - 2
    return math.ceil(sr / R) * math.ceil(sc / C) * per_fold - 1


# Golden numbers measured with SCALE-Sim 3.0.0 (benchmarks/scalesim_crosscheck.py), 32x32.
@pytest.mark.parametrize(("P", "K", "N", "dataflow", "cycles"), [
    (3136, 64, 64, "ws", 12919),
    (196, 256, 1024, "ws", 74239),
    (3136, 64, 64, "os", 24695),
    (196, 256, 1024, "os", 71231),
    (3136, 64, 64, "is", 30967),
    (196, 256, 1024, "is", 62607),
])
def test_golden_scalesim(P: int, K: int, N: int, dataflow: str, cycles: int) -> None:
    run = run_scalesim(GemmLayer("x", "conv", P=P, K=K, N=N), hw(32, 32, dataflow))
    assert run.compute_cycles == cycles


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 64), st.integers(1, 64), st.integers(1, 300), st.integers(1, 300),
       st.integers(1, 300), st.sampled_from(["ws", "os", "is"]))
def test_formula(R: int, C: int, P: int, K: int, N: int, dataflow: str) -> None:
    run = run_scalesim(GemmLayer("x", "conv", P=P, K=K, N=N), hw(R, C, dataflow))
    assert run.compute_cycles == scalesim_cycles(P, K, N, R, C, dataflow)


def test_groups_repeat_the_gemm() -> None:
    one = run_scalesim(GemmLayer("x", "conv", P=49, K=9, N=1), hw(8, 8, "ws"))
    many = run_scalesim(GemmLayer("x", "depthwise", P=49, K=9, N=1, groups=12), hw(8, 8, "ws"))
    assert many.compute_cycles == 12 * one.compute_cycles
    assert many.folds == 12 * one.folds
    assert many.counts[("filter_sram", "read")] == 12 * 9


def test_ideal_bandwidth_has_no_stalls_and_counts_each_operand_once() -> None:
    layer = GemmLayer("x", "conv", P=100, K=64, N=48)
    run = run_scalesim(layer, hw(16, 16, "ws"))
    assert run.dram_stall_cycles == run.prefetch_cycles == run.writeback_cycles == 0
    assert run.total_cycles == run.compute_cycles
    c = run.counts
    assert c[("filter_sram", "read")] == 64 * 48  # every weight loaded once
    assert c[("ifmap_sram", "read")] == 100 * 64 * 3  # A streamed once per column fold
    # the whole ifmap (6.4 KB) fits in a 32 KiB half: fetched once from DRAM
    assert c[("dram", "read_byte")] == 100 * 64 + 64 * 48
    assert c[("dram", "write_byte")] == 100 * 48
    assert c[("ofmap_sram", "psum_read")] == 100 * 16 * 3 * 3  # row folds 2..4 read back


def test_low_bandwidth_stalls_and_prefetch_is_exposed() -> None:
    layer = GemmLayer("x", "conv", P=100, K=64, N=48)
    slow = run_scalesim(layer, hw(16, 16, "ws", bandwidth=1.0, kib=1))
    assert slow.prefetch_cycles == 100 * 16 + 16 * 16  # first fold's ifmap rows and weights
    assert slow.dram_stall_cycles > 0
    assert slow.total_cycles > slow.compute_cycles + slow.dram_stall_cycles
    fast = run_scalesim(layer, hw(16, 16, "ws", bandwidth=1e6, kib=1))
    assert fast.dram_stall_cycles == 0 and fast.compute_cycles == slow.compute_cycles


def test_small_sram_refetches_and_spills() -> None:
    layer = GemmLayer("x", "conv", P=512, K=64, N=48)
    big = run_scalesim(layer, hw(16, 16, "ws", kib=256)).counts
    small = run_scalesim(layer, hw(16, 16, "ws", kib=4)).counts
    assert small[("dram", "read_byte")] > big[("dram", "read_byte")]
    assert small[("dram", "write_byte")] > big[("dram", "write_byte")]  # spilled psums


def test_ifmap_moves_as_a_feature_map_not_as_im2col() -> None:
    """A 3x3 stride-1 conv reads every im2col word from the SRAM but fetches each input once."""
    from accel_sim.mapping import ifmap_distinct_fraction

    layer = GemmLayer("c", "conv", P=16 * 16, K=8 * 9, N=8, kernel=(3, 3), padding=(1, 1),
                      in_shape=(1, 8, 16, 16), out_shape=(1, 8, 16, 16))
    assert ifmap_distinct_fraction(layer) == pytest.approx(1 / 9)
    c = run_scalesim(layer, hw(128, 8, "ws", kib=1024)).counts
    assert c[("ifmap_sram", "read")] == 16 * 16 * 72  # im2col words streamed into the array
    assert c[("ifmap_sram", "write")] == 16 * 16 * 8  # the feature map, fetched once
    linear = GemmLayer("l", "linear", P=4, K=10, N=3, in_shape=(4, 10), out_shape=(4, 3))
    assert ifmap_distinct_fraction(linear) == 1.0
