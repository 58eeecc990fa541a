"""The ZigZag energy cross-check's own arithmetic (benchmarks/zigzag_crosscheck.py), without ZigZag:
our energy table converted to its per-access costs, its rows read back in our components, and the
per-layer and network comparison."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pandas as pd
import pytest

from accel_sim.hardware import load_hardware

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zigzag_crosscheck as zz

HW = load_hardware("edge-32x32")  # 32 x 32, int8, 16 B/cycle DRAM


def test_a_word_costs_our_pj_per_word_whatever_the_port_width() -> None:
    assert zz.per_access(4.5, 8, 8) == pytest.approx(4.5)
    assert zz.per_access(4.5, 256, 8) == pytest.approx(4.5 * 32)
    # a 32-bit partial sum moved over a 1024-bit port: 1/32 of an access, four words' worth
    assert zz.per_access(4.5, 1024, 8) / 32 == pytest.approx(4 * 4.5)


def test_costs_come_from_the_energy_table() -> None:
    e = HW.energy
    costs = zz.zigzag_costs(HW)
    assert costs["filter_sram"] == pytest.approx((e.filter_sram_read_pj * 32,
                                                  e.filter_sram_write_pj * 32))
    assert costs["ifmap_sram"] == pytest.approx((e.ifmap_sram_read_pj * 32,
                                                 e.ifmap_sram_write_pj * 32))
    assert costs["ofmap_sram"] == pytest.approx((e.ofmap_sram_read_pj * 128,
                                                 e.ofmap_sram_write_pj * 128))  # 32 x 32 bits
    assert costs["dram"] == pytest.approx((e.dram_pj_per_byte * 16,) * 2)  # 16 B per access
    assert costs["rf_w"] == pytest.approx((e.reg_pj, e.reg_pj))
    arch = zz.accelerator(HW)
    assert arch["operational_array"]["unit_energy"] == pytest.approx(e.mac_pj)
    for name, (rd, wr) in costs.items():
        if name != "mac":
            assert (arch["memories"][name]["r_cost"], arch["memories"][name]["w_cost"]) == (rd, wr)


def test_the_cache_key_changes_with_the_energy_costs() -> None:
    dearer = dataclasses.replace(HW, energy_override=dataclasses.replace(HW.energy, mac_pj=1.0))
    same = dataclasses.replace(HW, energy_override=HW.energy)
    key = zz.digest(zz.zigzag_setup(HW, 32, 6))
    assert zz.digest(zz.zigzag_setup(same, 32, 6)) == key
    assert zz.digest(zz.zigzag_setup(dearer, 32, 6)) != key


def _zigzag_row() -> dict:
    """A mocked driver row: 100 ifmap words read over a 256-bit port (3.125 accesses, counted
    as 3 by ZigZag's truncation, here 4 to keep the arithmetic whole), etc."""
    return {
        "zz_mac_pj": 30.0, "zz_energy_pj": 1000.0,
        "lv:I:ifmap_sram:RD_OUT_TO_LOW:access": 4, "lv:I:ifmap_sram:RD_OUT_TO_LOW:pj": 576.0,
        "lv:I:ifmap_sram:RD_OUT_TO_LOW:bits": 800,
        "lv:I:ifmap_sram:WR_IN_BY_HIGH:access": 1, "lv:I:ifmap_sram:WR_IN_BY_HIGH:pj": 144.0,
        "lv:I:dram:RD_OUT_TO_LOW:bits": 256, "lv:I:dram:RD_OUT_TO_LOW:pj": 100.0,
        "lv:W:rf_w:RD_OUT_TO_LOW:access": 10, "lv:W:rf_w:RD_OUT_TO_LOW:pj": 0.5,
        "lv:W:rf_w:WR_IN_BY_HIGH:access": 5, "lv:W:rf_w:WR_IN_BY_HIGH:pj": float("nan"),
        "lv:O:ofmap_sram:WR_IN_BY_LOW:access": 2, "lv:O:ofmap_sram:WR_IN_BY_LOW:pj": 50.0,
        "lv:O:dram:WR_IN_BY_LOW:bits": 64, "lv:O:dram:WR_IN_BY_LOW:pj": 99.5,
    }


def test_zigzag_rows_read_back_in_our_components() -> None:
    out = zz.zigzag_energy(_zigzag_row(), zz.port_bits(HW), 8)
    assert out["mac_pj"] == 30.0
    assert out["ifmap_sram_pj"] == 720.0
    assert out["ifmap_sram_reads"] == 4 * 32 and out["ifmap_sram_writes"] == 32  # words
    assert out["ifmap_sram_read_words_moved"] == 100
    assert out["ofmap_sram_writes"] == 2 * 128 and out["ofmap_sram_reads"] == 0
    assert out["filter_sram_pj"] == 0 and out["filter_sram_reads"] == 0  # absent columns
    assert out["reg_pj"] == 0.5 and out["reg_reads"] == 10 and out["reg_writes"] == 5  # NaN = 0
    assert out["dram_pj"] == pytest.approx(199.5)
    assert (out["dram_I_bytes"], out["dram_W_bytes"], out["dram_O_bytes"]) == (32, 0, 8)
    assert out["total_pj"] == 1000.0 and out["compared_pj"] == 999.5


def _our_frame() -> pd.DataFrame:
    row = {"layer": "conv", "mapping": "j>i>t T/all", "P": 4, "K": 8, "N": 2,
           "energy_mac_pj": 30.0,
           "energy_reg_pj": 7.0, "energy_ifmap_sram_pj": 700.0, "energy_filter_sram_pj": 0.0,
           "energy_ofmap_sram_pj": 60.0, "energy_dram_pj": 200.0, "energy_leakage_pj": 5.0,
           "energy_total_pj": 1002.0, "pe_reg_accesses": 97, "ifmap_sram_reads": 100,
           "ifmap_sram_writes": 32, "filter_sram_reads": 0, "filter_sram_writes": 0,
           "ofmap_sram_reads": 0, "ofmap_sram_writes": 8, "dram_read_bytes": 32,
           "dram_write_bytes": 8}
    return pd.DataFrame([row])


def test_ours_is_dynamic_and_splits_dram_bytes_per_operand() -> None:
    ours = zz.our_energy(_our_frame(), word_bytes=1)
    row = ours.iloc[0]
    assert row.total_pj == 997.0  # less leakage
    assert row.compared_pj == 990.0  # and less the registers
    assert (row.dram_I_bytes, row.dram_W_bytes, row.dram_O_bytes) == (32, 0, 8)
    assert row.reg_reads == 97


def test_comparison_per_layer_and_network() -> None:
    theirs = pd.DataFrame([zz.zigzag_energy(_zigzag_row(), zz.port_bits(HW), 8)] * 2)
    theirs.insert(0, "layer", ["a", "b"])
    ours = zz.our_energy(pd.concat([_our_frame()] * 2, ignore_index=True), word_bytes=1)
    ours["layer"] = ["a", "b"]
    ours.loc[1, "compared_pj"] = 2 * 999.5  # layer b: twice ZigZag's
    table = zz.energy_compare(theirs, ours)
    assert list(table.layer) == ["a", "b", "total"]
    assert table.ratio_compared_pj.tolist() == pytest.approx([990 / 999.5, 2.0,
                                                              (990 + 1999) / 1999])
    assert table.ratio_filter_sram_pj.tolist() == [1.0, 1.0, 1.0]  # 0 against 0 agrees
    assert zz.within(table, "compared_pj", 0.10) == 1
    assert zz.within(table, "mac_pj", 0.10) == 2
    text = zz.energy_agreement(table)
    assert "on 1 of the 2 layers, and on 1 of the 2 layers where both move" in text
    md = zz.energy_markdown(table)
    assert "| MAC energy | µJ | 2 / 2 |" in md
    outliers = zz.energy_outliers(table, pd.concat([_our_frame()] * 2, ignore_index=True))
    assert "| b | 2.00 |" in outliers and "| a |" not in outliers


def test_layers_must_match() -> None:
    theirs = pd.DataFrame([{**zz.zigzag_energy(_zigzag_row(), zz.port_bits(HW), 8),
                            "layer": "a"}])
    ours = zz.our_energy(_our_frame(), word_bytes=1)
    with pytest.raises(RuntimeError):
        zz.energy_compare(theirs, ours)
