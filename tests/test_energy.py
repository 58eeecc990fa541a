"""Energy = counts x table + leakage, per component."""

from __future__ import annotations

import dataclasses

import pytest

from accel_sim.energy import COMPONENTS, energy
from accel_sim.hardware import build_hardware
from accel_sim.mapper import run_layer
from accel_sim.report import _COUNTS, _ENERGY_FIELDS, LayerResult
from accel_sim.simulate import simulate
from accel_sim.workload import GemmLayer

TABLE = build_hardware({}).energy


def test_prices_counts_and_leakage() -> None:
    counts = {("mac", "active"): 10, ("mac", "gated"): 4, ("dram", "read_byte"): 3,
              ("dram", "metadata_byte"): 3, ("ofmap_sram", "psum_read"): 7}
    pj = energy(counts, TABLE, cycles=2000, clock_mhz=1000.0)
    assert set(pj) == set(COMPONENTS)
    assert pj["mac"] == pytest.approx(10 * TABLE.mac_pj + 4 * TABLE.gated_mac_pj)
    assert pj["dram"] == pytest.approx(3 * TABLE.dram_pj_per_byte)  # subsets not priced twice
    assert pj["ofmap_sram"] == 0
    assert pj["leakage"] == pytest.approx(TABLE.leakage_mw * 2e-6 * 1e9)  # mW x 2 us in pJ


def test_energy_is_linear_in_the_table() -> None:
    run = run_layer(GemmLayer("x", "conv", P=50, K=40, N=30), build_hardware({}))
    doubled = dataclasses.replace(TABLE, **{f.name: 2 * getattr(TABLE, f.name)
                                            for f in dataclasses.fields(TABLE)})
    one = energy(run.counts, TABLE, run.total_cycles, 1000.0)
    two = energy(run.counts, doubled, run.total_cycles, 1000.0)
    assert all(two[c] == pytest.approx(2 * one[c]) for c in COMPONENTS)


def test_report_totals_add_up() -> None:
    layers = [GemmLayer(f"l{i}", "conv", P=20 + i, K=30, N=10 + i) for i in range(3)]
    report = simulate(layers, build_hardware({}))
    frame = report.frame
    total = report.totals
    assert total.layer == "total"
    assert total.total_cycles == frame.total_cycles.sum()
    assert total.energy_total_pj == pytest.approx(frame.energy_total_pj.sum())
    assert frame.energy_total_pj.iloc[0] == pytest.approx(
        sum(frame[f"energy_{c}_pj"].iloc[0] for c in COMPONENTS))
    assert (frame.latency_us == frame.total_cycles / 1000.0).all()
    assert 0 < total.utilization <= 1
    assert list(report.to_frame(totals=True).layer) == ["l0", "l1", "l2", "total"]


def test_a_result_from_a_run_is_the_one_init_builds() -> None:
    """from_run fills the instance's __dict__ directly: every field, in order, as __init__."""
    layer = GemmLayer("x", "conv", P=50, K=40, N=30)
    hw = build_hardware({})
    run = run_layer(layer, hw)
    pj = energy(run.counts, TABLE, run.total_cycles, 1000.0)
    result = LayerResult.from_run(layer, "dense", run, pj, 1024, 1000.0)
    names = [f.name for f in dataclasses.fields(LayerResult)]
    assert list(vars(result)) == names
    built = LayerResult(**vars(result))
    assert result == built and repr(result) == repr(built)
    for name, key in _COUNTS.items():
        assert getattr(result, name) == run.counts[key], name
    for name, component in _ENERGY_FIELDS:
        assert getattr(result, name) == pj[component], name
    for name in ("folds", "compute_cycles", "edge_stall_cycles", "dram_stall_cycles",
                 "prefetch_cycles", "writeback_cycles", "effective_macs", "mapping",
                 "compulsory_dram_bytes"):
        assert getattr(result, name) == getattr(run, name), name
    assert (result.layer, result.kind, result.P, result.K, result.N, result.groups,
            result.macs) == ("x", "conv", 50, 40, 30, 1, layer.macs)
    assert (result.scheme, result.pes, result.clock_mhz) == ("dense", 1024, 1000.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.folds = 0
