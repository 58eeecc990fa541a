"""Design-space sweeps: many independent design points mapped over a Dask cluster.

A `DesignPoint` is one (model, scheme, density, array, dataflow, ...) combination. The
sweep is a Dask graph that shares work where points share it:

- ``lower`` once per (model, batch): the network's GEMM layers (shapes only; a topology CSV is
  read by the client, which may be the only machine that has it, and sent to the workers);
- ``draw`` once per mask group (model, scheme, density, block, N:M, batch, seed): the synthetic
  masks, from the lowered layers, with the statistics every point asks of them
  (`accel_sim.sparsity.LayerSparsity.summarize`), which the copies other workers
  receive carry;
- ``evaluate_batch`` per batch of points of one group: one engine run per point, the batch's rows
  returned as one compact ``pyarrow.Table`` (no pandas on the way).

Lowering and masks are Dask tasks whose results the batches depend on, so each is computed once
per cluster and moved to the workers that need it (not recomputed per worker). By default the
tasks run on an embedded ``dask.distributed.LocalCluster`` (one single-threaded worker process per
core); ``scheduler="tcp://host:8786"`` sends the same sweep to an existing cluster, whose workers
need not share the client's disk: results travel back to the client, which is the only writer.

Storage (``out/``): the client appends each finished batch as one Parquet fragment
``parts/part-<hash>.parquet`` of a dataset directory, written atomically; the fragment's footer
lists the points it holds (key and row count), so an interrupted sweep resumes where it stopped
and loses nothing: points found in a fragment are not run again. Once every point is done, the
rows are put in the order of the points asked for (this call's batches from memory, fragments
of an earlier call read in one dataset scan) and written as ``results.parquet``: tidy, one row
per design point and layer, the point's fields as columns, and the memory each point ran with
(`MEMORY_COLUMNS`).

Memory scaling: by default a sweep over a shipped preset scales the preset's SRAMs and DRAM
bandwidth with the array side (`DesignPoint.hardware`), and a sweep over a user's ``.toml``
or ``.cfg`` file runs every point with the file's memory as it is; ``scale_memory`` (a field of
every point, so part of its key) says which, and ``accel-sim sweep --scale-memory`` /
``--no-scale-memory`` chooses.

Fold plans are not cached here: a plan depends on (layer, sparsity, array, dataflow, memory), and
the simulator (`accel_sim.simulate.simulate`) is where a per-worker plan cache belongs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from accel_sim.hardware import (
    HardwareSpec,
    build_hardware,
    describe,
    load_hardware,
    presets,
    with_overrides,
)
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import LayerSparsity, synthetic_network
from accel_sim.workload import GemmLayer
from crisp.console import progress_bar
from crisp.errors import UserError
from crisp.io import write_atomic
from crisp.pattern_core import DEFAULT_BLOCK

PARTS = "parts"
"""Folder (under a sweep's ``out``) of the Parquet fragments, one per finished batch."""
RESULTS = "results.parquet"
"""The sweep's final table (under ``out``)."""
_TASKS_PER_WORKER = 8  # enough batches to keep every worker busy to the end, few enough that
# the scheduler's round trips (on the client's cores when the cluster is local) stay small
_POINTS_META = b"accel_sim.points"  # fragment footer key: JSON [[point key, rows], ...]
MEMORY_COLUMNS = ("ifmap_sram_kib", "filter_sram_kib", "ofmap_sram_kib", "dram_bytes_per_cycle")
"""Result columns holding the memory each point ran with: the three SRAM sizes (KiB) and the
DRAM bandwidth (bytes per cycle), after any scaling (`DesignPoint.hardware`)."""


@dataclass(frozen=True)
class DesignPoint:
    """One simulation to run.

    Attributes:
        model: zoo model name (or topology CSV path).
        scheme: sparsity scheme (dense, unstructured, channel, nm, block, hybrid).
        density: fraction of weights kept (synthetic masks, see `accel_sim.sparsity`).
        rows, cols: array dimensions in PEs.
        dataflow: ws, os or is.
        block: block size B of block and hybrid sparsity (default
            `crisp.pattern_core.DEFAULT_BLOCK`).
        nm: N:M pattern of hybrid sparsity, e.g. ``"2:4"``.
        hw: preset name, ``.toml`` or SCALE-Sim ``.cfg`` file whose array and dataflow the
            point overrides.
        scale_memory: scale ``hw``'s SRAMs and DRAM bandwidth with the array side (see
            `hardware`); None (the default) becomes True for a shipped preset and False
            for a file, so a user's memory is used as written unless asked otherwise.
        batch: samples per inference.
        seed: seed of the synthetic masks.
        mapping: ``best`` (the mapper searches each layer) or ``scalesim`` (fixed schedule).
        objective: what ``best`` minimises: ``latency``, ``energy`` or ``edp``.
    """

    model: str
    scheme: str
    density: float
    rows: int
    cols: int
    dataflow: str = "ws"
    block: int = DEFAULT_BLOCK
    nm: str = "2:4"
    hw: str = "edge-32x32"
    scale_memory: bool | None = None
    batch: int = 1
    seed: int = 0
    mapping: str = "best"
    objective: str = "latency"

    def __post_init__(self) -> None:
        if self.scale_memory is None:  # resolved once, so that the key holds the choice made
            object.__setattr__(self, "scale_memory", self.hw in presets())

    @functools.cached_property
    def key(self) -> str:
        """A stable identifier of the point (hash of its fields)."""
        text = json.dumps(self.fields(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def fields(self) -> dict[str, object]:
        """The point's fields by name (``dataclasses.asdict`` without its deep copy)."""
        return {f.name: getattr(self, f.name) for f in dataclass_fields(self)}

    @property
    def group(self) -> tuple:
        """Points with the same group share the network and its masks."""
        return (self.model, self.scheme, self.density, self.block, self.nm, self.batch, self.seed)

    def hardware(self) -> HardwareSpec:
        """The point's accelerator: ``hw`` with this array and dataflow.

        With ``scale_memory`` the three SRAMs scale with the array's side, ``sqrt(rows*cols)``,
        from ``hw``'s (64 KiB at 32x32 gives 256 KiB at 128x128, SCALE-Sim's pairing), rounded
        up to a whole KiB and at least twice a full ``rows x cols`` weight tile, so every array
        holds a fold; the DRAM bandwidth scales likewise (16 B/cycle at 32x32, 64 at 128x128, as
        the presets). Without it the memory is ``hw``'s as written, as ``accel-sim run --hw HW
        --array RxC`` uses it.
        """
        return _hardware(self.hw, self.rows, self.cols, self.dataflow, self.scale_memory)


@functools.lru_cache(maxsize=256)
def _hardware(base_name: str, rows: int, cols: int, dataflow: str,
              scale_memory: bool) -> HardwareSpec:
    base = load_hardware(base_name)
    hw = with_overrides(base, array=f"{rows}x{cols}", dataflow=dataflow)
    if not scale_memory:
        return hw
    data = describe(hw)
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
    blocks: Sequence[int] = (DEFAULT_BLOCK,),
    scale_memory: bool | None = None,
    **common: object,
) -> list[DesignPoint]:
    """The cross product of the given axes as design points.

    Dense runs once per array and dataflow (density 1); ``nm`` runs at the density of the ``nm``
    pattern (2:4: 0.5) whatever the density axis, since N:M alone fixes it.

    Args:
        scale_memory: scale the base hardware's SRAMs and DRAM bandwidth with each array's side
            (`DesignPoint.hardware`); None = on when ``hw`` (in ``common``, default
            ``edge-32x32``) is a shipped preset name, off for a ``.toml`` or ``.cfg`` file.
        common: the other `DesignPoint` fields, equal for every point (``nm``, ``hw``,
            ``batch``, ``seed``, ``mapping``, ``objective``).
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
        points.append(DesignPoint(model, scheme, density, rows, cols, dataflow, block,
                                  scale_memory=scale_memory, **common))
    return list(dict.fromkeys(points))


Network = tuple[Sequence[GemmLayer], dict[str, LayerSparsity]]
"""Layers and their per-layer sparsity descriptors, as `simulate` takes them."""


@functools.lru_cache(maxsize=4)
def lower(model: str, batch: int) -> tuple[GemmLayer, ...]:
    """The model's layers without their weights (synthetic masks need only shapes)."""
    return tuple(load_layers(model, batch=batch, weights=False))


def draw(layers: Sequence[GemmLayer], point: DesignPoint) -> Network:
    """The synthetic masks of ``point``'s group (equal for every point of the group)."""
    n, m = (int(v) for v in point.nm.split(":"))
    layers, descriptors = synthetic_network(list(layers), point.scheme, point.density,
                                            point.seed, (n, m), point.block)
    for layer in layers:  # once here, not once per worker that receives the masks
        descriptors[layer.name].summarize(layer)
    return layers, descriptors


def evaluate_batch(points: Sequence[DesignPoint], network: Network) -> pa.Table:
    """Simulate points of one group on their shared network: one engine run per point.

    Returns:
        One row per point and layer (points in the given order, layers in execution order):
        the `accel_sim.report.LayerResult` columns, ``schedule`` (the layer's chosen
        mapping, the result's ``mapping``), the point's fields (``mapping``: ``best`` or
        ``scalesim``, as asked; ``scheme``: the same as the result's), then the memory the
        point ran with (`MEMORY_COLUMNS`, floats).
    """
    layers, descriptors = network
    rows = []
    for point in points:
        hw = point.hardware()
        fields = point.fields()
        fields.update((name, float(getattr(hw.memory, name))) for name in MEMORY_COLUMNS)
        report = simulate(layers, hw, descriptors, mapping=point.mapping,
                          objective=point.objective)
        for result in report.layers:
            row = result.as_row()
            row["schedule"] = row["mapping"]  # the point's own field takes the name mapping
            row.update(fields)
            rows.append(row)
    return pa.Table.from_pylist(rows)


def evaluate_group(points: Sequence[DesignPoint]) -> pa.Table:
    """Lower, draw the masks and simulate points of one group, in this process."""
    return evaluate_batch(points, draw(lower(points[0].model, points[0].batch), points[0]))


def _done(out: Path) -> dict[Path, list[tuple[str, int]]]:
    """The fragments under ``out/parts`` and the (point key, rows) each holds, from footers."""
    done = {}
    for path in sorted((out / PARTS).glob("part-*.parquet")):
        meta = pq.read_schema(path).metadata or {}
        if _POINTS_META in meta:
            done[path] = [tuple(item) for item in json.loads(meta[_POINTS_META])]
    return done


def _batches(points: Sequence[DesignPoint], per_batch: int) -> list[list[DesignPoint]]:
    """Points grouped by mask group, each group dealt round-robin into batches of about
    ``per_batch`` points (so batches of one group mix cheap and costly arrays)."""
    groups: dict[tuple, list[DesignPoint]] = {}
    for point in points:
        groups.setdefault(point.group, []).append(point)
    batches = []
    for members in groups.values():
        count = -(-len(members) // per_batch)
        batches.extend(members[i::count] for i in range(count))
    return batches


def _cost(point: DesignPoint) -> float:
    """A rough relative cost of a point: folds grow as the array shrinks."""
    return 1.0 / (point.rows * point.cols)


def _write_part(out: Path, table: pa.Table, points: Sequence[DesignPoint]) -> Path:
    """Append one batch as a dataset fragment, atomically; its footer lists its points."""
    per_point = table.num_rows // len(points)
    if per_point * len(points) != table.num_rows:  # every point of a group has the same layers
        raise ValueError(f"batch of {len(points)} points returned {table.num_rows} rows")
    listing = [[p.key, per_point] for p in points]
    table = table.replace_schema_metadata({_POINTS_META: json.dumps(listing).encode()})
    name = hashlib.sha1("".join(p.key for p in points).encode()).hexdigest()[:16]
    path = out / PARTS / f"part-{name}.parquet"
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp))


@dataclass
class SweepRun:
    """What `execute_sweep` did.

    Attributes:
        table: the final table (points in the order asked for, layers in execution order).
        points: design points asked for.
        ran: points simulated by this call (the others were already done).
        tasks: Dask tasks submitted (lowering, masks and batches).
        wall_s: seconds from the call to its return.
        cluster_s: seconds spent starting (or connecting to) the cluster and closing it.
        wait_s: seconds the client waited on the cluster for results.
        client_s: seconds the client spent on its own work (planning, submitting, writing
            fragments, assembling the final table (reading an earlier call's fragments) and
            writing it): ``wall - cluster - wait``.
    """

    table: pa.Table
    points: int
    ran: int
    tasks: int = 0
    wall_s: float = 0.0
    cluster_s: float = 0.0
    wait_s: float = 0.0
    client_s: float = field(default=0.0)


def execute_sweep(
    points: Sequence[DesignPoint],
    out: str | Path,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    batch_points: int | None = None,
) -> SweepRun:
    """Run every point not done yet on Dask, write the final table, and time the client.

    Args:
        points: the design points (`grid`).
        out: result folder: ``parts/`` holds a Parquet fragment per finished batch and
            ``results.parquet`` all points once the sweep completes.
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``); None starts a
            LocalCluster of ``workers`` single-threaded processes (default: all cores).
        progress: show a tqdm bar over points (see `crisp.console.progress_bar`).
        batch_points: points per task; default the points over 8 tasks per worker (fewer
            where mask groups are small: a batch holds points of one group).

    Raises:
        UserError: no points, or the scheduler cannot be reached.
    """
    from dask.distributed import Client, as_completed

    start = time.perf_counter()  # after the import: a client imports dask once, not per sweep
    waited = cluster_s = 0.0
    if not points:
        raise UserError("the sweep has no design points")
    if batch_points is not None and batch_points < 1:
        raise UserError(f"batch_points {batch_points} must be at least 1")
    out = Path(out)
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    done = _done(out)
    have = {key for listing in done.values() for key, _ in listing}
    todo = list(dict.fromkeys(p for p in points if p.key not in have))
    bar = progress_bar(progress=progress, total=len(points), initial=len(points) - len(todo),
                       unit="point", desc="sweep")
    tasks = 0
    held: dict[Path, pa.Table] = {}  # fragments written by this call, as written
    if todo:
        cluster, tick = None, time.perf_counter()
        if scheduler is None:
            cluster = local_cluster(workers or os.cpu_count() or 1)
        try:
            client = Client(cluster or scheduler, timeout="20s")
        except OSError as err:
            raise UserError(f"cannot reach the Dask scheduler {scheduler}: {err}") from None
        try:
            cluster_s = time.perf_counter() - tick
            size = batch_points or max(1, -(-len(todo) // (_TASKS_PER_WORKER
                                                           * _worker_count(client))))
            batches = _batches(todo, size)
            # Costliest groups first. Every lowering first; then a group's batches rank above
            # the next group's masks, so masks are freed as the sweep goes, not held all at once.
            group_cost: dict[tuple, float] = {}
            for point in todo:
                group_cost[point.group] = group_cost.get(point.group, 0.0) + _cost(point)
            order = sorted(group_cost, key=lambda g: -group_cost[g])
            rank = {group: 2 * (len(order) - i) for i, group in enumerate(order)}
            networks: dict[tuple, object] = {}
            masks: dict[tuple, object] = {}
            futures = {}
            for batch in sorted(batches, key=lambda b: -rank[b[0].group]):
                first = batch[0]
                if (first.model, first.batch) in networks:
                    pass
                elif first.model.endswith(".csv"):  # a file here, maybe not on the workers
                    networks[first.model, first.batch] = client.scatter(
                        [lower(first.model, first.batch)], hash=False)[0]
                    tasks -= 1
                else:
                    networks[first.model, first.batch] = client.submit(
                        lower, first.model, first.batch, pure=False, priority=2 * len(order) + 2)
                if first.group not in masks:
                    masks[first.group] = client.submit(
                        draw, networks[first.model, first.batch], first, pure=False,
                        priority=rank[first.group])
                futures[client.submit(evaluate_batch, batch, masks[first.group], pure=False,
                                      priority=rank[first.group] + 1)] = batch
            tasks += len(networks) + len(masks) + len(futures)
            del networks, masks  # the cluster frees them once their batches are done
            pending = as_completed(futures, loop=client.loop)  # not the default client's loop
            while True:
                tick = time.perf_counter()
                future = next(pending, None)
                table = future.result() if future is not None else None
                waited += time.perf_counter() - tick
                if future is None:
                    break
                batch = futures.pop(future)
                path = _write_part(out, table, batch)
                done[path] = [(p.key, table.num_rows // len(batch)) for p in batch]
                held[path] = table
                bar.update(len(batch))
        finally:
            tick = time.perf_counter()
            client.close()
            if cluster is not None:
                cluster.close()
            cluster_s += time.perf_counter() - tick
    bar.close()
    table = _final_table(points, done, held)
    write_atomic(out / RESULTS, lambda tmp: pq.write_table(table, tmp))
    wall = time.perf_counter() - start
    return SweepRun(table, len(points), len(todo), tasks, wall, cluster_s, waited,
                    wall - cluster_s - waited)


def local_cluster(workers: int) -> object:
    """A ``dask.distributed.LocalCluster`` of ``workers`` single-threaded worker processes.

    Dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (glibc then hands freed memory
    back to the system at once); the simulator allocates and frees many mid-sized arrays, and
    ran about 40 % slower so. This cluster's workers keep glibc's default (workers of a cluster
    started by hand should run without that variable too), and do without Dask's statistical
    profiler (a thread that samples every worker's stack every 10 ms).
    """
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                          "distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.ERROR)


def _worker_count(client: object) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def _final_table(
    points: Sequence[DesignPoint], done: dict[Path, list[tuple[str, int]]],
    held: dict[Path, pa.Table],
) -> pa.Table:
    """The rows of ``points``, in their order, from the fragments listed in ``done``.

    Fragments this call wrote are taken from ``held`` (the tables as written: reading them back
    would cost the client a scan of every fragment after the last batch); the others, from an
    earlier, interrupted call, are read in one dataset scan. Each scanned row's fragment comes
    from the scan itself (``__filename``), so the order in which the scan yields fragments does
    not matter; within a fragment, rows keep the footer's order.
    """
    paths = [path for path, listing in done.items() if listing]
    where: dict[str, tuple[Path, int, int]] = {}  # point key -> (fragment, first row, rows)
    for path in paths:
        offset = 0
        for key, count in done[path]:
            where.setdefault(key, (path, offset, count))
            offset += count
    missing = [p for p in points if p.key not in where]
    if missing:
        raise UserError(f"sweep result lacks point {missing[0]} (results folder changed?)")
    parts, rows, start = [], {}, 0
    on_disk = [path for path in paths if path not in held]
    if on_disk:
        dataset = pads.dataset([str(path) for path in on_disk], format="parquet")
        scanned = dataset.to_table(columns=[*dataset.schema.names, "__filename"])
        files = np.asarray(scanned.column("__filename").to_pylist(), dtype=object)
        rows = {path: np.flatnonzero(files == str(path)) for path in on_disk}
        parts.append(scanned.drop_columns("__filename"))
        start = scanned.num_rows
    for path in paths:
        if path in held:
            parts.append(held[path])
            rows[path] = np.arange(start, start + held[path].num_rows)
            start += held[path].num_rows
    if any(len(rows[path]) != sum(n for _, n in done[path]) for path in paths):
        raise UserError("sweep fragments hold other rows than their footers list")
    index = [rows[path][first:first + count] for path, first, count in
             (where[p.key] for p in points)]
    table = pa.concat_tables([part.replace_schema_metadata(None) for part in parts])
    return table.take(np.concatenate(index))


def run_sweep(
    points: Sequence[DesignPoint],
    out: str | Path,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """`execute_sweep`, returning the final table as a DataFrame (see there)."""
    return execute_sweep(points, out, scheduler, workers, progress).table.to_pandas()


def pending(points: Iterable[DesignPoint], out: str | Path) -> list[DesignPoint]:
    """The points of ``points`` that ``out`` holds no result for yet."""
    have = {key for listing in _done(Path(out)).values() for key, _ in listing}
    return [p for p in points if p.key not in have]
