"""The iso-accuracy benchmark's bookkeeping: planned runs, iso points, hybrid's gains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import iso_accuracy

from crisp.errors import UserError


def _table() -> pd.DataFrame:
    rows = [  # classes, scheme, density, top1, latency, energy
        (1, "dense", 1.0, 90.0, 60.0, 100.0),
        (1, "hybrid", 0.25, 89.5, 30.0, 55.0),  # within 1 point
        (1, "hybrid", 0.1, 89.0, 20.0, 40.0),  # exactly 1 point below: still iso
        (1, "hybrid", 0.04, 80.0, 15.0, 25.0),  # too inaccurate
        (1, "channel", 0.25, 91.0, 22.0, 30.0),
        (1, "channel", 0.1, 88.0, 10.0, 11.0),
        (1, "nm", 0.5, 90.0, 37.0, 70.0),
        (1, "block", 0.25, 70.0, 25.0, 40.0),  # never within: NaN
        (5, "dense", 1.0, 80.0, 60.0, 100.0),
        (5, "hybrid", 0.25, 79.5, 30.0, 50.0),
        (5, "unstructured", 0.25, 80.0, 59.0, 60.0),
    ]
    return pd.DataFrame(rows, columns=["classes", "scheme", "density", "top1", "latency_us",
                                       "energy_uj"])


def test_iso_points_pick_the_cheapest_run_within_tolerance() -> None:
    points = iso_accuracy.iso_points(_table(), 1.0).set_index(["classes", "scheme"])
    hybrid = points.loc[(1, "hybrid")]
    assert (hybrid.latency_us, hybrid.latency_density, hybrid.iso_runs) == (20.0, 0.1, 2)
    assert hybrid.energy_uj == 40.0 and hybrid.dense_top1 == 90.0
    assert points.loc[(1, "channel")].latency_us == 22.0  # the 10 us run is 2 points below
    assert np.isnan(points.loc[(1, "block")].latency_us)
    assert points.loc[(1, "dense")].latency_us == 60.0
    strict = iso_accuracy.iso_points(_table(), 0.5).set_index(["classes", "scheme"])
    assert strict.loc[(1, "hybrid")].latency_us == 30.0


def test_hybrid_gains_are_baseline_over_hybrid() -> None:
    gains = iso_accuracy.hybrid_gains(iso_accuracy.iso_points(_table(), 1.0))
    g = gains.set_index(["classes", "baseline"])
    assert g.loc[(1, "dense")].speedup == pytest.approx(3.0)
    assert g.loc[(1, "dense")].energy_saving == pytest.approx(2.5)
    assert g.loc[(1, "channel")].speedup == pytest.approx(1.1)
    assert g.loc[(1, "channel")].energy_saving == pytest.approx(0.75)  # channel is more frugal
    assert np.isnan(g.loc[(1, "block")].speedup)
    assert g.loc[(5, "unstructured")].speedup == pytest.approx(59 / 30)
    assert len(gains) == 4 + 2


def test_planned_runs_and_missing_dense() -> None:
    runs = iso_accuracy.planned_runs(["dense", "nm", "hybrid"], [0.25, 0.1])
    assert runs == [("dense", 1.0), ("nm", 0.5), ("hybrid", 0.25), ("hybrid", 0.1)]
    with pytest.raises(UserError, match="no dense run for 1 classes"):
        iso_accuracy.iso_points(_table()[lambda t: t.scheme != "dense"])


def test_figure_has_one_panel_per_class_count() -> None:
    fig = iso_accuracy.figure(_table())
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "1 user class"


def test_published_tables_order_rows_and_format_cells() -> None:
    table = _table().assign(target=lambda t: t.density)
    wide = iso_accuracy.wide_table(table).splitlines()
    assert wide[0] == "| classes | scheme | target 0.25 | target 0.1 | target 0.04 |"
    schemes = [line.split(" | ")[1] for line in wide[2:]]
    assert schemes == ["dense", "channel", "nm", "block", "hybrid", "dense", "unstructured",
                       "hybrid"]  # the published order, whatever the runs' order
    assert wide[2].endswith("| 90.0 % @ 60.0 µs, 100 µJ (d 1.000) |  |  |")  # dense: first
    points = iso_accuracy.iso_points(table)
    text = iso_accuracy.markdown(points[["classes", "scheme", "latency_us", "latency_density"]])
    assert "| 1 | hybrid | 20.0 | 0.100 |" in text and "| 1 | block | – | – |" in text
