"""The recovery benchmark's bookkeeping: its variants, summary, tables and figure."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import recovery as bench


def _table() -> pd.DataFrame:
    rows = []
    for seed, (a, b) in enumerate([(10.0, 90.0), (30.0, 94.0)]):
        for name in bench.VARIANTS:
            for scheme, top1 in (("hybrid", b if name == "all (default)" else a),
                                 ("dense", 100.0)):
                rows.append({"scheme": scheme, "recovery": name, "seed": seed, "top1": top1,
                             "val_top1": top1, "collapsed": scheme == "hybrid" and seed == 0
                             and name == "plain", "warned": top1 < 50, "seconds": 1.0 + seed})
    return pd.DataFrame(rows)


def test_variants_run_from_plain_to_the_default() -> None:
    plain, default = bench.VARIANTS["plain"], bench.VARIANTS["all (default)"]
    assert (plain.distill, plain.recalibrate, plain.balanced, plain.min_steps) == (
        False, False, False, 1)
    assert default == type(default)()  # the default recovery of crisp prune
    assert list(bench.VARIANTS) == ["plain", "batches", "batches + recalibrate",
                                    "batches + distill", "all (default)"]


def test_summary_tables_and_figure() -> None:
    frame = bench.summary(_table()).set_index(["scheme", "recovery"])
    hybrid = frame.loc[("hybrid", "all (default)")]
    assert hybrid.top1 == pytest.approx(92.0) and hybrid.top1_std == pytest.approx(2 ** 1.5)
    plain = frame.loc[("hybrid", "plain")]
    assert plain.collapsed == 1 and plain.warned == 2
    text = bench.markdown(bench.summary(_table())).splitlines()
    assert text[0].startswith("| scheme | recovery: plain | recovery: batches |")
    assert "| hybrid | 20.0 ± 14.1 % (1 collapsed, 2 warned of 2) |" in text[2]
    assert bench.timing(_table()).splitlines()[2] == (
        "| seconds a run (mean) | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 |")
    fig = bench.figure(bench.summary(_table()), "context")
    assert len(fig.axes[0].patches) == 2 * len(bench.VARIANTS)


def test_bad_counts_exit_2(capsys) -> None:
    assert bench.main(["--seeds", "0"]) == 2
    assert "--seeds 0" in capsys.readouterr().err
    assert bench.main(["--schemes", "hybrid,magic"]) == 2
    assert "unknown magic" in capsys.readouterr().err
