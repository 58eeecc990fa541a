"""Figures from tidy frames: every figure renders to PNG and PDF, and the numbers it shows."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from accel_sim import plots


def _tidy() -> pd.DataFrame:
    rows = []
    for model, scheme, (r, c), block, layer in itertools.product(
        ["netA", "netB"], ["dense", "channel", "hybrid"], [(8, 8), (16, 16), (8, 16)], [16, 32],
        ["l0", "l1"],
    ):
        scale = {"dense": 1.0, "channel": 0.6, "hybrid": 0.25}[scheme]
        cycles = 1000 * scale * 256 / (r * c) + block
        rows.append({
            "model": model, "scheme": scheme, "rows": r, "cols": c, "block": block, "layer": layer,
            "dataflow": "ws", "total_cycles": cycles, "latency_us": cycles / 1000,
            "energy_mac_pj": 10 * scale, "energy_dram_pj": 5.0, "energy_total_pj": 10 * scale + 5,
            "utilization": 0.5, "macs": 100,
        })
    return pd.DataFrame(rows)


def test_network_totals_sum_layers_and_weight_utilization() -> None:
    df = _tidy()
    df.loc[df.layer == "l1", "macs"] = 300
    df.loc[df.layer == "l1", "utilization"] = 1.0
    totals = plots.network_totals(df, ["model", "scheme", "rows", "cols", "block"])
    assert len(totals) == 2 * 3 * 3 * 2
    assert np.allclose(totals.utilization, (0.5 * 100 + 1.0 * 300) / 400)
    one = df[(df.model == "netA") & (df.scheme == "dense") & (df.rows == 8) & (df.cols == 8)
             & (df.block == 16)]
    row = totals[(totals.model == "netA") & (totals.scheme == "dense") & (totals.rows == 8)
                 & (totals.cols == 8) & (totals.block == 16)]
    assert row.total_cycles.item() == one.total_cycles.sum()


def test_normalised_bars_show_hybrid_speedups() -> None:
    df = _tidy()
    df = df[(df.rows == 8) & (df.cols == 8) & (df.block == 16)]
    fig = plots.normalised_bars(df, "latency_us")
    texts = [t.get_text() for t in fig.axes[0].texts]
    # Hybrid latency per layer 0.25*1000*4+16 = 1016 vs dense 4016: 3.95x.
    assert any("4.0x dense" in t for t in texts)
    heights = sorted({round(p.get_height(), 3) for p in fig.axes[0].patches})
    assert heights[-1] == 1.0


def test_every_figure_saves_png_and_pdf(tmp_path) -> None:
    df = _tidy()
    acc = pd.DataFrame({
        "scheme": ["dense", "hybrid", "hybrid", "channel"], "classes": [10, 10, 10, 10],
        "density": [1.0, 0.25, 0.1, 0.3], "accuracy": [90.0, 89.0, 80.0, 70.0],
        "latency_us": [10.0, 4.0, 2.0, 5.0],
    })
    figures = {
        "bars": plots.normalised_bars(df[df.block == 16], "energy_total_pj"),
        "breakdown": plots.energy_breakdown(df[(df.rows == 8) & (df.block == 16)]),
        "arrays": plots.latency_vs_array(df[df.block == 16]),
        "heat": plots.utilization_heatmap(df[df.block == 16]),
        "codesign": plots.codesign_map(df[df.model == "netA"]),
        "pareto": plots.accuracy_pareto(acc),
        "roofline": plots.roofline(df.assign(effective_macs=df.macs, dram_bytes=50), 64, 16),
    }
    for name, fig in figures.items():
        paths = plots.save(fig, tmp_path / name)
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        assert all(p.stat().st_size > 1000 for p in paths)


def test_pareto_front_drops_dominated_points() -> None:
    df = pd.DataFrame({"latency_us": [1, 2, 3, 4], "accuracy": [50, 40, 70, 60]})
    front = plots.pareto_front(df, "latency_us", "accuracy")
    assert front.latency_us.tolist() == [1, 3]


def test_roofline_points_sit_under_both_roofs() -> None:
    df = pd.DataFrame({"scheme": ["dense", "hybrid", "hybrid"], "layer": ["a", "a", "total"],
                       "effective_macs": [1000, 500, 500], "dram_bytes": [100, 10, 10],
                       "total_cycles": [200, 50, 50]})
    fig = plots.roofline(df, 64, 16)
    points = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    np.testing.assert_allclose(sorted(map(tuple, points)), [(10, 5), (50, 10)])  # total dropped
    roof = fig.axes[0].lines[0].get_ydata()
    assert roof.max() == 64
