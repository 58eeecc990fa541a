"""The iso-accuracy benchmark's bookkeeping: planned runs, seeds, iso points, hybrid's gains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import iso_accuracy

from crisp.errors import UserError

_COLUMNS = ["classes", "scheme", "target", "val_top1", "top1", "latency_us", "energy_uj"]


def _table(seeds: int = 1) -> pd.DataFrame:
    """Runs with the validation top-1 deciding; seed s adds s to the latency and the test top-1
    is the validation one less 2 (so a pick made on the test top-1 would differ)."""
    points = [  # classes, scheme, target, val top1, test top1, latency, energy
        (1, "dense", 1.0, 90.0, 88.0, 60.0, 100.0),
        (1, "hybrid", 0.25, 89.5, 87.5, 30.0, 55.0),  # within 1 point
        (1, "hybrid", 0.1, 89.0, 87.0, 20.0, 40.0),  # exactly 1 point below: still iso
        (1, "hybrid", 0.04, 80.0, 95.0, 15.0, 25.0),  # too inaccurate on validation images
        (1, "channel", 0.25, 91.0, 89.0, 22.0, 30.0),
        (1, "channel", 0.1, 88.0, 86.0, 10.0, 11.0),
        (1, "nm", 0.5, 90.0, 88.0, 37.0, 70.0),
        (1, "block", 0.25, 70.0, 68.0, 25.0, 40.0),  # never within: NaN
        (5, "dense", 1.0, 80.0, 78.0, 60.0, 100.0),
        (5, "hybrid", 0.25, 79.5, 77.5, 30.0, 50.0),
        (5, "unstructured", 0.25, 80.0, 78.0, 59.0, 60.0),
    ]
    rows = []
    for seed in range(seeds):
        for c, scheme, target, val, test, lat, en in points:
            rows.append({"classes": c, "scheme": scheme, "target": target, "seed": seed,
                         "density": target, "val_top1": val, "top1": test + seed,
                         "latency_us": lat + seed, "energy_uj": en, "seconds": 1.0,
                         "predicted": 1 if seed == 0 and scheme in ("block", "hybrid") else 3})
    return pd.DataFrame(rows)


def test_iso_points_pick_the_cheapest_point_within_tolerance_on_validation() -> None:
    points = iso_accuracy.iso_points(_table(), 1.0).set_index(["classes", "scheme"])
    hybrid = points.loc[(1, "hybrid")]
    assert (hybrid.latency_us, hybrid.latency_density, hybrid.iso_runs) == (20.0, 0.1, 2)
    assert hybrid.energy_uj == 40.0 and hybrid.dense_val == 90.0 and hybrid.dense_top1 == 88.0
    assert hybrid.latency_top1 == 87.0  # the test top-1 is reported beside the choice
    assert hybrid.lowest_density == 0.1 and points.loc[(1, "channel")].lowest_density == 0.25
    assert np.isnan(points.loc[(1, "block")].lowest_density)
    assert points.loc[(1, "channel")].latency_us == 22.0  # the 10 us run is 2 points below
    assert np.isnan(points.loc[(1, "block")].latency_us)
    assert points.loc[(1, "dense")].latency_us == 60.0
    strict = iso_accuracy.iso_points(_table(), 0.5).set_index(["classes", "scheme"])
    assert strict.loc[(1, "hybrid")].latency_us == 30.0


def test_points_average_the_seeds_and_report_the_spread() -> None:
    table = _table(seeds=3)
    agg = iso_accuracy.aggregate(table).set_index(["classes", "scheme", "target"])
    hybrid = agg.loc[(1, "hybrid", 0.1)]
    assert hybrid.seeds == 3 and hybrid.latency_us == pytest.approx(21.0)  # 20, 21, 22
    assert hybrid.latency_us_std == pytest.approx(1.0) and hybrid.top1 == pytest.approx(88.0)
    assert agg.loc[(5, "hybrid", 0.25)].collapsed == 1  # seed 0 predicts one class of five
    assert agg.loc[(1, "block", 0.25)].collapsed == 0  # one class of one: no collapse
    assert agg.loc[(5, "dense", 1.0)].collapsed == 0
    assert iso_accuracy.aggregate(_table()).latency_us_std.eq(0).all()  # one seed: no spread
    points = iso_accuracy.iso_points(table).set_index(["classes", "scheme"])
    assert points.loc[(1, "hybrid")].latency_us_std == pytest.approx(1.0)


def test_iso_pick_reads_the_mean_not_one_seed() -> None:
    table = _table(seeds=2)
    lucky = (table.scheme == "hybrid") & (table.target == 0.04)
    table.loc[lucky & (table.seed == 0), "val_top1"] = 90.0  # one good seed, mean 85
    points = iso_accuracy.iso_points(table).set_index(["classes", "scheme"])
    assert points.loc[(1, "hybrid")].latency_density == 0.1


def test_hybrid_gains_are_baseline_over_hybrid_seed_by_seed() -> None:
    table = _table(seeds=2)
    gains = iso_accuracy.hybrid_gains(table, iso_accuracy.iso_points(table, 1.0))
    g = gains.set_index(["classes", "baseline"])
    dense = g.loc[(1, "dense")]  # 60/20 and 61/21
    assert dense.speedup == pytest.approx((3 + 61 / 21) / 2)
    assert dense.speedup_std == pytest.approx(np.std([3, 61 / 21], ddof=1))
    assert dense.energy_saving == pytest.approx(2.5) and dense.energy_saving_std == 0
    assert g.loc[(1, "channel")].energy_saving == pytest.approx(0.75)  # channel is more frugal
    assert np.isnan(g.loc[(1, "block")].speedup)
    assert g.loc[(5, "unstructured")].speedup == pytest.approx((59 / 30 + 60 / 31) / 2)
    assert len(gains) == 4 + 2


def test_planned_runs_and_missing_dense() -> None:
    runs = iso_accuracy.planned_runs(["dense", "nm", "hybrid"], [0.25, 0.1])
    assert runs == [("dense", 1.0), ("nm", 0.5), ("hybrid", 0.25), ("hybrid", 0.1)]
    with pytest.raises(UserError, match="no dense run for 1 classes"):
        iso_accuracy.iso_points(_table()[lambda t: t.scheme != "dense"])


def test_figure_has_one_panel_per_class_count_with_error_bars() -> None:
    fig = iso_accuracy.figure(_table(seeds=2))
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "1 user class"
    assert fig.axes[0].containers  # errorbar containers: the spread is drawn


def test_published_tables_order_rows_and_format_cells() -> None:
    table = _table(seeds=2)
    wide = iso_accuracy.wide_table(table).splitlines()
    assert wide[0] == "| classes | scheme | target 0.25 | target 0.1 | target 0.04 |"
    schemes = [line.split(" | ")[1] for line in wide[2:]]
    assert schemes == ["dense", "channel", "nm", "block", "hybrid", "dense", "unstructured",
                       "hybrid"]  # the published order, whatever the runs' order
    assert wide[2].endswith("| 88.5 ± 0.7 % @ 60.5 µs, 100 µJ (d 1.000) |  |  |")
    assert "1 collapsed" in wide[-1] and "collapsed" not in wide[5]  # 5-class hybrid; block
    points = iso_accuracy.iso_points(table)
    text = iso_accuracy.markdown(points, ["classes", "scheme", "latency_us", "latency_density"])
    assert "| 1 | hybrid | 20.5 ± 0.7 | 0.100 |" in text and "| 1 | block | – | – |" in text


def test_variant_names_the_missing_parts_of_the_recovery() -> None:
    args = iso_accuracy.build_parser().parse_args([])
    assert (args.seeds, args.distill, args.recalibrate) == (3, True, True)
    assert iso_accuracy.variant(args) == ""
    args = iso_accuracy.build_parser().parse_args(["--no-distill", "--no-recalibrate"])
    assert iso_accuracy.variant(args) == "_no-distill_no-recalibrate"
    assert iso_accuracy.variant(iso_accuracy.build_parser().parse_args(["--no-distill"])) == (
        "_no-distill")


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0"], "--seeds 0: allowed 1 or more"),
    (["--temperature", "0"], "argument --temperature: '0': allowed a number in (0, 1000]"),
    (["--distill-weight", "1.5"], "argument --distill-weight: '1.5': allowed a number in [0, 1]"),
    (["--val-share", "0.6"], "argument --val-share: '0.6': allowed a number in (0, 0.5]"),
])
def test_bad_flags_exit_2_before_any_work(flags: list[str], message: str, capsys,
                                          tmp_path: Path) -> None:
    assert iso_accuracy.main([*flags, "--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
