"""Sweeps on Dask: tidy results, one file per point, resume without rerunning finished points."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from accel_sim import sweep
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import synthetic_network
from accel_sim.sweep import DesignPoint, evaluate_group, grid, run_sweep


def test_grid_runs_dense_once_per_array_and_keys_are_stable() -> None:
    points = grid(["resnet_small"], ["dense", "hybrid"], [0.5, 0.25], [(8, 8), (16, 8)])
    assert sum(p.scheme == "dense" for p in points) == 2
    assert sum(p.scheme == "hybrid" for p in points) == 4
    assert len({p.key for p in points}) == len(points)
    assert DesignPoint("m", "dense", 1.0, 8, 8).key == DesignPoint("m", "dense", 1.0, 8, 8).key


def test_group_results_match_a_direct_simulation() -> None:
    points = [DesignPoint("resnet_small", "hybrid", 0.25, r, c) for r, c in ((16, 16), (32, 8))]
    results = evaluate_group(points)
    layers, descriptors = synthetic_network(
        [replace(layer, weight=None) for layer in load_layers("resnet_small")], "hybrid", 0.25, 0,
        (2, 4), 32)
    for point, frame in results:
        assert (frame.rows == point.rows).all() and (frame.scheme == "hybrid").all()
        direct = simulate(layers, point.hardware(), descriptors).frame
        pd.testing.assert_series_equal(frame.total_cycles, direct.total_cycles)
        pd.testing.assert_series_equal(frame.energy_total_pj, direct.energy_total_pj)


def test_sweep_writes_points_and_resumes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    points = grid(["resnet_small"], ["dense", "nm"], [0.5], [(8, 8), (16, 16)])
    first = run_sweep(points, tmp_path, workers=1, progress=False)
    assert len(list((tmp_path / "points").glob("*.parquet"))) == len(points) == 4
    assert (tmp_path / "results.parquet").exists()
    assert set(first.columns) >= {"model", "scheme", "rows", "cols", "layer", "total_cycles"}

    # Interrupted sweep: one point's file is missing; only that point runs again.
    missing = points[1]
    (tmp_path / "points" / f"{missing.key}.parquet").unlink()
    ran: list[DesignPoint] = []

    def spy(group: list[DesignPoint]) -> list[tuple[DesignPoint, pd.DataFrame]]:
        ran.extend(group)
        return evaluate_group(group)

    monkeypatch.setattr(sweep, "evaluate_group", spy)

    class Inline:  # a stand-in Dask client that runs tasks in this process, to observe them
        def __init__(self, *args: object, **kwargs: object) -> None: ...

        def map(self, fn, groups, pure=False):
            return [_Done(fn(g)) for g in groups]

        def close(self) -> None: ...

    monkeypatch.setattr("dask.distributed.Client", Inline)
    monkeypatch.setattr("dask.distributed.as_completed", iter)
    again = run_sweep(points, tmp_path, scheduler="tcp://unused:8786", progress=False)
    assert ran == [missing]
    pd.testing.assert_frame_equal(first, again)


class _Done:
    def __init__(self, value: object) -> None:
        self.value = value

    def result(self) -> object:
        return self.value
