"""Design-space sweeps: many independent design points mapped over a Dask cluster.

A :class:`DesignPoint` is one (model, scheme, density, array, dataflow, ...) combination. Points
that share a network and its synthetic masks form a *group*, simulated by one task, so masks are
drawn once per group (the expensive part) and each point costs only its engine run. By default the
tasks run on an embedded ``dask.distributed.LocalCluster`` (one single-threaded worker process
per core); ``scheduler="tcp://host:8786"`` sends the same sweep to an existing cluster.

Results are tidy: one row per design point and layer, the point's fields as columns. Each point is
written to ``<out>/points/<key>.parquet`` as soon as its group finishes (atomically), so an
interrupted sweep resumes where it stopped: points whose file exists are not run again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import groupby, product
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from accel_sim.hardware import (
    HardwareSpec,
    build_hardware,
    describe,
    load_hardware,
    with_overrides,
)
from accel_sim.report import write_frame
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import synthetic_network
from accel_sim.workload import GemmLayer
from crisp.errors import UserError


@dataclass(frozen=True)
class DesignPoint:
    """One simulation to run.

    Attributes:
        model: zoo model name (or topology CSV path).
        scheme: sparsity scheme (dense, unstructured, channel, nm, block, hybrid).
        density: fraction of weights kept (synthetic masks, see :mod:`accel_sim.sparsity`).
        rows, cols: array dimensions in PEs.
        dataflow: ws, os or is.
        block: block size B of block and hybrid sparsity.
        nm: N:M pattern of hybrid sparsity, e.g. ``"2:4"``.
        hw: preset (or TOML file) the array and dataflow override.
        batch: samples per inference.
        seed: seed of the synthetic masks.
    """

    model: str
    scheme: str
    density: float
    rows: int
    cols: int
    dataflow: str = "ws"
    block: int = 32
    nm: str = "2:4"
    hw: str = "edge-32x32"
    batch: int = 1
    seed: int = 0

    @property
    def key(self) -> str:
        """A stable file name for the point's result (hash of its fields)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def group(self) -> tuple:
        """Points with the same group share the network and its masks."""
        return (self.model, self.scheme, self.density, self.block, self.nm, self.batch, self.seed)

    def hardware(self) -> HardwareSpec:
        """The point's accelerator: the base preset with this array and dataflow.

        The three SRAMs scale with the array's side, ``sqrt(rows*cols)``, from the preset's
        (64 KiB at 32x32 gives 256 KiB at 128x128, SCALE-Sim's pairing), rounded up to a whole
        KiB and at least twice a full ``rows x cols`` weight tile, so every array holds a fold;
        the DRAM bandwidth scales likewise (16 B/cycle at 32x32, 64 at 128x128, as the presets).
        """
        return _hardware(self.hw, self.rows, self.cols, self.dataflow)


@functools.lru_cache(maxsize=256)
def _hardware(preset: str, rows: int, cols: int, dataflow: str) -> HardwareSpec:
    base = load_hardware(preset)
    data = describe(with_overrides(base, array=f"{rows}x{cols}", dataflow=dataflow))
    scale = math.sqrt(rows * cols / (base.array.rows * base.array.cols))
    tile_kib = 2 * rows * cols * base.array.word_bytes / 1024
    for buffer in ("ifmap", "filter", "ofmap"):
        kib = data["memory"][f"{buffer}_sram_kib"]
        data["memory"][f"{buffer}_sram_kib"] = max(math.ceil(kib * scale), math.ceil(tile_kib))
    data["memory"]["dram_bytes_per_cycle"] *= scale
    return build_hardware(data, base.name)


def grid(
    models: Sequence[str],
    schemes: Sequence[str],
    densities: Sequence[float],
    arrays: Sequence[tuple[int, int]],
    dataflows: Sequence[str] = ("ws",),
    blocks: Sequence[int] = (32,),
    **common: object,
) -> list[DesignPoint]:
    """The cross product of the given axes as design points.

    Dense runs once per array and dataflow (density 1); ``nm`` runs at the density of the ``nm``
    pattern (2:4: 0.5) whatever the density axis, since N:M alone fixes it.
    """
    points = []
    for model, scheme, density, (rows, cols), dataflow, block in product(
        models, schemes, densities, arrays, dataflows, blocks
    ):
        if scheme == "dense":
            density = 1.0
        if scheme == "nm":  # N:M fixes the density: the hybrid's own pattern, alone
            n, m = (int(v) for v in str(common.get("nm", "2:4")).split(":"))
            density = n / m
        if scheme not in ("block", "hybrid"):
            block = blocks[0]
        points.append(DesignPoint(model, scheme, density, rows, cols, dataflow, block, **common))
    return list(dict.fromkeys(points))


@functools.lru_cache(maxsize=4)
def _network(model: str, batch: int) -> tuple[GemmLayer, ...]:
    """The model's layers without their weights (synthetic masks need only shapes)."""
    return tuple(replace(layer, weight=None) for layer in load_layers(model, batch=batch))


def evaluate_group(points: Sequence[DesignPoint]) -> list[tuple[DesignPoint, pd.DataFrame]]:
    """Simulate points of one group: masks drawn once, one engine run per point.

    Returns:
        (point, per-layer frame with the point's fields as columns) for each point.
    """
    first = points[0]
    n, m = (int(v) for v in first.nm.split(":"))
    layers, descriptors = synthetic_network(
        list(_network(first.model, first.batch)), first.scheme, first.density, first.seed,
        (n, m), first.block,
    )
    results = []
    for point in points:
        frame = simulate(layers, point.hardware(), descriptors).frame
        for name, value in asdict(point).items():
            frame[name] = value
        results.append((point, frame))
    return results


def _pending(points: Iterable[DesignPoint], out: Path) -> list[list[DesignPoint]]:
    todo = [p for p in points if not (out / "points" / f"{p.key}.parquet").exists()]
    todo.sort(key=lambda p: (repr(p.group), p.key))
    return [list(g) for _, g in groupby(todo, key=lambda p: p.group)]


def run_sweep(
    points: Sequence[DesignPoint],
    out: str | Path,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every point not done yet on Dask and return all points' results.

    Args:
        points: the design points (:func:`grid`).
        out: result folder; ``points/`` holds one Parquet file per finished point and
            ``results.parquet`` all of them once the sweep completes.
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``); None starts a
            LocalCluster of ``workers`` single-threaded processes (default: all cores).
        progress: show a tqdm bar over points.

    Raises:
        UserError: no points, or the scheduler cannot be reached.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    if not points:
        raise UserError("the sweep has no design points")
    out = Path(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    groups = _pending(points, out)
    bar = tqdm(total=len(points), initial=len(points) - sum(map(len, groups)), unit="point",
               desc="sweep", disable=not progress)
    if groups:
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
        try:
            client = Client(cluster or scheduler, timeout="20s")
        except OSError as err:
            raise UserError(f"cannot reach the Dask scheduler {scheduler}: {err}") from None
        try:
            # Largest groups first, so no long task starts last.
            groups.sort(key=len, reverse=True)
            futures = client.map(evaluate_group, groups, pure=False)
            for future in as_completed(futures):
                for point, frame in future.result():
                    write_frame(frame, out / "points" / f"{point.key}.parquet")
                    bar.update()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    bar.close()
    frames = [pd.read_parquet(out / "points" / f"{p.key}.parquet") for p in points]
    result = pd.concat(frames, ignore_index=True)
    write_frame(result, out / "results.parquet")
    return result
