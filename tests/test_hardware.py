"""Hardware specs: presets, TOML and SCALE-Sim cfg loading, validation, energy defaults."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import pytest

from accel_sim.hardware import (
    EnergyTable,
    build_hardware,
    describe,
    load_energy,
    load_hardware,
    presets,
    sram_pj_per_word,
    with_overrides,
)
from accel_sim.simulate import COUNT_LIMIT, count_bound, simulate
from accel_sim.workload import GemmLayer
from crisp.errors import UserError


def test_presets_load_and_round_trip() -> None:
    assert {"edge-32x32", "cloud-128x128", "dense-32x32"} <= set(presets())
    hw = load_hardware("edge-32x32")
    assert (hw.array.rows, hw.array.cols, hw.sparse.nm) == (32, 32, (2, 4))
    assert hw.edge_words_per_cycle == 64  # R * M/N for 2:4
    assert build_hardware(describe(hw)) == hw


def test_toml_file(tmp_path) -> None:
    path = tmp_path / "hw.toml"
    path.write_text('[array]\nrows = 8\ncols = 4\ndataflow = "os"\n[memory]\n'
                    "dram_bytes_per_cycle = 2.5\n")
    hw = load_hardware(path)
    assert (hw.array.rows, hw.array.cols, hw.array.dataflow) == (8, 4, "os")
    assert hw.memory.dram_bytes_per_cycle == 2.5 and hw.name == "hw"


def test_scalesim_cfg(tmp_path) -> None:
    path = tmp_path / "scale.cfg"
    path.write_text("[general]\nrun_name = my_run\n[architecture_presets]\nArrayHeight: 16\n"
                    "ArrayWidth: 8\nIfmapSramSzkB: 128\nFilterSramSzkB: 64\nOfmapSramSzkB: 32\n"
                    "Dataflow : is\nBandwidth : 10\n")
    hw = load_hardware(path)
    assert hw.name == "my_run"
    assert (hw.array.rows, hw.array.cols, hw.array.dataflow) == (16, 8, "is")
    assert (hw.memory.ifmap_sram_kib, hw.memory.ofmap_sram_kib) == (128, 32)
    assert hw.memory.dram_bytes_per_cycle == 10


@pytest.mark.parametrize(("data", "message"), [
    ({"array": {"rows": 0}}, r"rows = 0: allowed an integer in 1\.\.2\*\*16"),
    ({"array": {"rows": 1e300}}, r"rows = 1e\+300: allowed an integer"),
    ({"array": {"rows": 2.5}}, r"rows = 2\.5: allowed an integer"),
    ({"array": {"cols": 2**16 + 1}}, "cols = 65537: allowed"),
    ({"array": {"clock_mhz": math.inf}}, r"clock_mhz = inf: allowed a number in \(0, "),
    ({"array": {"psum_bits": 128}}, r"psum_bits = 128: allowed an integer in 8\.\.64"),
    ({"memory": {"dram_bytes_per_cycle": 1e-300}},
     r"dram_bytes_per_cycle = 1e-300: allowed a number in \[2\*\*-12, 2\*\*20\] or inf"),
    ({"memory": {"dram_bytes_per_cycle": math.nan}}, "dram_bytes_per_cycle = nan"),
    ({"memory": {"filter_sram_kib": math.inf}}, "filter_sram_kib = inf: allowed"),
    ({"memory": {"ifmap_words_per_cycle": True}}, "is not a number"),
    ({"energy": {**{f.name: 1.0 for f in fields(EnergyTable)}, "mac_pj": math.inf}},
     r"\[energy\] mac_pj = inf: allowed a number in \[0, "),
    ({"array": {"dataflow": "xs"}}, "allowed ws, os, is"),
    ({"array": {"word_bits": 12}}, "allowed 8, 16, 32"),
    ({"memory": {"dram_bytes_per_cycle": 0}}, "dram_bytes_per_cycle = 0: allowed"),
    ({"memory": {"ifmap_sram_kib": -1}}, r"ifmap_sram_kib = -1: allowed a number in \(0, "),
    ({"array": {"psum_bits": 4}}, r"psum_bits = 4: allowed an integer in 8\.\.64"),
    ({"array": {"psum_bits": 24, "word_bits": 32}}, "at least word_bits"),
    ({"array": {"word_bits": 16, "psum_bits": 8}}, "at least word_bits"),
    ({"array": {"psum_bits": 20}}, "multiple of 8"),
    ({"array": {"weight_buffers": 3}},
     r"\[array\] weight_buffers = 3: allowed an integer in 1\.\.2"),
    ({"array": {"weight_buffers": 0}}, r"weight_buffers = 0: allowed an integer in 1\.\.2"),
    ({"sparse": {"nm": "3:3"}}, "1 <= N < M"),
    ({"array": {"color": 1}}, "unknown field 'color'"),
    ({"energy": {"mac_pj": 1.0}}, "missing field 'gated_mac_pj'"),
])
def test_bad_descriptions(data: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_hardware(data)


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(UserError, match="edge-32x32"):
        load_hardware("tpu-v9")


def test_overrides_revalidate() -> None:
    hw = with_overrides(load_hardware("edge-32x32"), array="128x64", dataflow="os")
    assert (hw.array.rows, hw.array.cols, hw.array.dataflow) == (128, 64, "os")
    assert hw.sparse.nm == (2, 4)  # N:M and block skipping map onto every dataflow
    with pytest.raises(UserError, match=r"array '0x4': side = 0: allowed an integer in 1\.\."):
        with_overrides(hw, array="0x4")
    with pytest.raises(UserError, match=r"array '3000000000000000000x1': side = 3000000000"):
        with_overrides(hw, array="3000000000000000000x1")
    with pytest.raises(UserError, match="ROWSxCOLS"):
        with_overrides(hw, array="4by4")


def test_counts_that_could_pass_2_to_62_are_refused_before_simulating() -> None:
    layer = GemmLayer("huge", "linear", P=2**22, K=2**11, N=2**11)  # 2**44 MACs: accepted
    slow = build_hardware({"array": {"rows": 2**16, "cols": 2**16},
                           "memory": {"ifmap_words_per_cycle": 1}})
    with pytest.raises(UserError, match=r"could count up to .* above the simulator's 64-bit limit"):
        simulate([layer], slow)
    starved = build_hardware({"memory": {"dram_bytes_per_cycle": 2**-12}})
    part = GemmLayer("part", "linear", P=2**22, K=2**11, N=2**7)
    assert count_bound(part, starved) <= COUNT_LIMIT < 20 * count_bound(part, starved)
    with pytest.raises(UserError, match="2\\*\\*62"):
        simulate([replace(part, name=f"part{i}") for i in range(20)], starved)


def test_sram_too_small_names_layer_and_buffer() -> None:
    hw = build_hardware({"array": {"rows": 64, "cols": 64},
                         "memory": {"filter_sram_kib": 4}})  # half = 2 KiB < 4 KiB tile
    with pytest.raises(UserError, match=r"layer big: filter SRAM half holds 2 KiB .* needs 4 KiB"):
        simulate([GemmLayer("big", "conv", P=4, K=128, N=64)], hw)  # two 4 KiB tiles


def test_sram_energy_interpolation() -> None:
    assert sram_pj_per_word(8, 64) == pytest.approx(10)
    assert sram_pj_per_word(32, 64) == pytest.approx(20)
    assert sram_pj_per_word(16, 64) == pytest.approx(15)  # log-linear midpoint
    assert sram_pj_per_word(1024, 8) == pytest.approx(100 / 8)
    assert sram_pj_per_word(1, 64) == pytest.approx(10)  # clamped below 8 KiB


def test_energy_defaults_follow_word_width() -> None:
    e8 = build_hardware({}).energy
    e16 = build_hardware({"array": {"word_bits": 16}}).energy
    assert e8.mac_pj == pytest.approx(0.3) and e16.mac_pj == pytest.approx(1.5)
    assert 0 < e8.gated_mac_pj < 0.05 * e8.mac_pj
    assert e8.dram_pj_per_byte == pytest.approx(162.5)
    assert math.isclose(e16.ifmap_sram_read_pj, 2 * e8.ifmap_sram_read_pj)


def test_energy_file(tmp_path) -> None:
    table = describe(build_hardware({}))
    fields = {k: 1.0 for k in vars(build_hardware({}).energy)}
    path = tmp_path / "e.toml"
    path.write_text("[energy]\n" + "\n".join(f"{k} = {v}" for k, v in fields.items()))
    assert load_energy(path).mac_pj == 1.0
    path.write_text("[energy]\nmac_pj = 1.0\n")
    with pytest.raises(UserError, match="missing field"):
        load_energy(path)
    assert "energy" not in table
