"""Design-space sweeps: many independent design points mapped over a Dask cluster.

A `DesignPoint` is one (model, scheme, density, array, dataflow, ...) combination. The
sweep is a Dask graph that shares work where points share it:

- ``lower`` once per (model, batch): the network's GEMM layers (shapes only; a topology CSV is
  read by the client, which may be the only machine that has it, and sent to the workers);
- ``draw`` once per mask group (model, scheme, density, block, N:M, batch, seed, plan): the
  synthetic masks, from the lowered layers, with the statistics every point asks of them
  (`accel_sim.sparsity.LayerSparsity.summarize`), which the copies other workers
  receive carry;
- ``evaluate_batch`` per batch of points of one group: one engine run per point, the batch's rows
  returned as one compact ``pyarrow.Table`` (no pandas on the way).

Lowering and masks are Dask tasks whose results the batches depend on, so each is computed once
per cluster and moved to the workers that need it (not recomputed per worker). By default the
tasks run on an embedded ``dask.distributed.LocalCluster`` (one single-threaded worker process per
core); ``scheduler="tcp://host:8786"`` sends the same sweep to an existing cluster, whose workers
need not share the client's disk: results travel back to the client, which is the only writer.

Checks: every point is checked where it is made (`DesignPoint`: its fields, its hardware), and
the networks of a grid (`check_points`: the model lowers, its counts stay below the simulator's
limit) by `grid` and again by `execute_sweep` for the points it runs, on the client before any
cluster starts; a mistake is one `crisp.errors.UserError`.

Storage (``out/``): the client appends each finished batch as one Parquet fragment
``parts/part-<hash>.parquet`` of a dataset directory, written atomically; the fragment's footer
lists the points it holds (key and row count), so an interrupted sweep resumes where it stopped
and loses nothing: points found in a fragment are not run again. A point's key covers the
contents of the files it reads (`DesignPoint.hw_sha256`, `DesignPoint.model_sha256`), so an
edited hardware or topology file gives new points, never an earlier file's rows. A fragment
that does not read back (empty, truncated, not Parquet, rows other than its footer lists) is
moved to ``parts/corrupt/`` with a warning on stderr, and its points run again. The fragments of
an earlier call that hold asked-for points are read (one dataset scan) before the cluster
starts; once every point is done, the rows are put in the order of the points asked for and
written as ``results.parquet``: tidy, one row per design point and layer, the point's fields as
columns, and the memory each point ran with (`MEMORY_COLUMNS`).

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
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from importlib import resources
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from accel_sim.hardware import (
    DATAFLOWS,
    SCHEMA,
    HardwareSpec,
    build_hardware,
    describe,
    load_hardware,
    parse_nm,
    presets,
    with_overrides,
)
from accel_sim.mapper import check_choice
from accel_sim.onnx_lowering import parse_input_shape
from accel_sim.simulate import check_count_bound, simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import (
    SCHEMES,
    LayerSparsity,
    check_plan,
    nm_for_density,
    synthetic_network,
)
from accel_sim.workload import GemmLayer
from crisp import ranges
from crisp.console import progress_bar
from crisp.errors import UserError, one_line
from crisp.io import write_atomic
from crisp.pattern_core import DEFAULT_BLOCK

PARTS = "parts"
"""Folder (under a sweep's ``out``) of the Parquet fragments, one per finished batch."""
CORRUPT = "corrupt"
"""Folder (under ``out/parts``) where fragments that do not read back are moved, never deleted."""
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
    """One simulation to run, checked when made.

    Attributes:
        model: zoo model name (or SCALE-Sim topology ``.csv`` or ONNX ``.onnx`` path).
        input_shape: an ONNX model's input shapes (``1x3x224x224`` or ``NAME=DIMS,...``,
            `accel_sim.onnx_lowering.parse_input_shape`); empty: the file's own shapes. Only an
            ONNX ``model`` takes one.
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
        plan: layer plan of the synthetic masks (`accel_sim.sparsity.PLANS`): ``pruner`` (the
            pruner's: first conv and depthwise convs dense, classifier N:M for hybrid, one
            global density) or ``uniform`` (every layer at ``density``).
        mapping: ``best`` (the mapper searches each layer) or ``scalesim`` (fixed schedule).
        objective: what ``best`` minimises: ``latency``, ``energy`` or ``edp``.
        hw_sha256: SHA-256 (hex) of the bytes of ``hw`` (of a preset: its shipped TOML), read
            when the point is made; part of the point's key, so an edited hardware file gives
            new points, and a worker refuses to run a point whose file changed since.
        model_sha256: SHA-256 (hex) of the bytes of the topology or ONNX file ``model`` names,
            likewise; empty for a zoo model (its layers come from the code).

    Raises:
        UserError: a field out of range (scheme, density, array side, dataflow, block, N:M,
            batch, seed, plan, mapping, objective; hybrid's block not a multiple of M; the ``nm``
            scheme at a density no N:M pattern keeps), an unreadable file, or hardware that
            does not load (`hardware`).
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
    plan: str = "pruner"
    mapping: str = "best"
    objective: str = "latency"
    input_shape: str = ""
    hw_sha256: str = field(init=False, repr=False)
    model_sha256: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise UserError(f"scheme {self.scheme!r}: allowed {', '.join(SCHEMES)}")
        ranges.DENSITY.check(self.density, "density")
        for name in ("rows", "cols"):
            SCHEMA["array"][name].check(getattr(self, name), name)
        if self.dataflow not in DATAFLOWS:
            raise UserError(f"dataflow {self.dataflow!r}: allowed {', '.join(DATAFLOWS)}")
        ranges.BLOCK.check(self.block, "block")
        nm = parse_nm(self.nm)
        if nm is None:
            raise UserError(f"nm {self.nm!r}: a sweep needs an N:M pattern such as 2:4")
        if self.scheme == "hybrid" and self.block % nm[1]:
            raise UserError(f"block {self.block}: hybrid {self.nm} needs a block size that is "
                            f"a multiple of M={nm[1]}")
        if self.scheme == "nm":
            nm_for_density(self.density)
        ranges.BATCH.check(self.batch, "batch")
        ranges.SEED.check(self.seed, "seed")
        check_plan(self.plan)
        check_choice(self.mapping, self.objective)
        if self.input_shape:
            if not self.model.endswith(".onnx"):
                raise UserError(f"input_shape {self.input_shape!r}: {self.model} is not an ONNX "
                                "model (.onnx); only ONNX models take an input shape")
            parse_input_shape(self.input_shape)
        if self.scale_memory is None:  # resolved once, so that the key holds the choice made
            object.__setattr__(self, "scale_memory", self.hw in presets())
        object.__setattr__(self, "hw_sha256", input_sha256(self.hw, "hardware file"))
        object.__setattr__(self, "model_sha256", input_sha256(self.model, "topology file"))
        self.hardware()

    @functools.cached_property
    def key(self) -> str:
        """A stable identifier of the point (hash of its fields, the input files' contents
        included)."""
        text = json.dumps(self.fields(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def fields(self) -> dict[str, object]:
        """The point's fields by name (``dataclasses.asdict`` without its deep copy)."""
        return {f.name: getattr(self, f.name) for f in dataclass_fields(self)}

    @property
    def network(self) -> tuple[str, int, str, str]:
        """Points with the same network share its lowered layers: the `lower` arguments."""
        return self.model, self.batch, self.model_sha256, self.input_shape

    @property
    def group(self) -> tuple:
        """Points with the same group share the network and its masks."""
        return (*self.network, self.scheme, self.density, self.block, self.nm, self.seed,
                self.plan)

    def hardware(self) -> HardwareSpec:
        """The point's accelerator: ``hw`` with this array and dataflow.

        With ``scale_memory`` the three SRAMs scale with the array's side, ``sqrt(rows*cols)``,
        from ``hw``'s (64 KiB at 32x32 gives 256 KiB at 128x128, SCALE-Sim's pairing), rounded
        up to a whole KiB and at least twice a full ``rows x cols`` weight tile, so every array
        holds a fold; the DRAM bandwidth scales likewise (16 B/cycle at 32x32, 64 at 128x128, as
        the presets). Without it the memory is ``hw``'s as written, as ``accel-sim run --hw HW
        --array RxC`` uses it.
        """
        return _hardware(self.hw, self.hw_sha256, self.rows, self.cols, self.dataflow,
                         self.scale_memory)


_FILES = (".toml", ".cfg", ".csv", ".onnx")  # inputs a point names by path (hardware, model)


def input_sha256(name: str, what: str) -> str:
    """SHA-256 (hex) of what an input of a point reads: a file's bytes (hardware ``.toml`` or
    ``.cfg``, topology ``.csv``, ONNX model ``.onnx``) or a preset's shipped TOML; empty for any
    other name (a zoo model, whose layers come from the code, or an unknown name, which its
    loader refuses).

    Args:
        what: what the file is, for the message (``hardware file``).

    Raises:
        UserError: a file that cannot be read.
    """
    if name.endswith(_FILES):
        try:
            data = Path(name).read_bytes()
        except OSError as err:
            raise UserError(f"{what} {name} cannot be read: {err.strerror or err}") from None
    elif name in presets():
        data = (resources.files("accel_sim") / "presets" / f"{name}.toml").read_bytes()
    else:
        return ""
    return hashlib.sha256(data).hexdigest()


def _same_input(name: str, sha256: str, what: str) -> None:
    """Refuse an input whose content is no longer the one a point was made with."""
    if input_sha256(name, what) != sha256:
        raise UserError(f"{what} {name} changed after the sweep's points were made: re-run the "
                        "command to sweep its new content")


@functools.lru_cache(maxsize=16)
def _base_hardware(name: str, sha256: str) -> HardwareSpec:
    """``name`` loaded, if its content still hashes to ``sha256`` (cached by content)."""
    base = load_hardware(name)
    _same_input(name, sha256, "hardware file")
    return base


@functools.lru_cache(maxsize=256)
def _hardware(base_name: str, sha256: str, rows: int, cols: int, dataflow: str,
              scale_memory: bool) -> HardwareSpec:
    base = _base_hardware(base_name, sha256)
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
    input_shape: str = "",
    **common: object,
) -> list[DesignPoint]:
    """The cross product of the given axes as design points, every one checked.

    Dense runs once per array and dataflow (density 1); ``nm`` runs at the density of the ``nm``
    pattern (2:4: 0.5) whatever the density axis, since N:M alone fixes it.

    Args:
        scale_memory: scale the base hardware's SRAMs and DRAM bandwidth with each array's side
            (`DesignPoint.hardware`); None = on when ``hw`` (in ``common``, default
            ``edge-32x32``) is a shipped preset name, off for a ``.toml`` or ``.cfg`` file.
        input_shape: the input shapes of the ONNX models among ``models``
            (`DesignPoint.input_shape`); the other models have their own.
        common: the other `DesignPoint` fields, equal for every point (``nm``, ``hw``,
            ``batch``, ``seed``, ``plan``, ``mapping``, ``objective``).

    Raises:
        UserError: a density or block of the axes out of range, a point `DesignPoint`
            refuses, or a network `check_points` refuses.
    """
    for density in densities:  # even those no point keeps (dense, nm)
        ranges.DENSITY.check(density, "density")
    for block in blocks:
        ranges.BLOCK.check(block, "block")
    n, m = parse_nm(str(common.get("nm", "2:4"))) or (1, 1)  # none: every point refuses it
    points = []
    for model, scheme, density, (rows, cols), dataflow, block in product(
        models, schemes, densities, arrays, dataflows, blocks
    ):
        if scheme == "dense":
            density = 1.0
        if scheme == "nm":  # N:M fixes the density: the hybrid's own pattern, alone
            density = n / m
        if scheme not in ("block", "hybrid"):
            block = blocks[0]
        shape = input_shape if model.endswith(".onnx") else ""
        points.append(DesignPoint(model, scheme, density, rows, cols, dataflow, block,
                                  scale_memory=scale_memory, input_shape=shape, **common))
    points = list(dict.fromkeys(points))
    check_points(points)
    return points


def check_points(points: Iterable[DesignPoint]) -> None:
    """Refuse points whose network does not lower, or whose counts on their hardware could pass
    the simulator's limit (`accel_sim.simulate.check_count_bound`): on the client, with shapes
    only (a zoo model is built on PyTorch's meta device), before any cluster starts.

    Raises:
        UserError: an unknown model, a topology file that does not read (or that changed since
            its points were made), a layer too large, or counts that could pass 2**62.
    """
    checked = set()
    for point in points:
        arguments = (point.network, point.hw, point.hw_sha256, point.rows, point.cols,
                     point.scale_memory)
        if arguments not in checked:
            checked.add(arguments)
            check_count_bound(lower(*point.network), point.hardware())


Network = tuple[Sequence[GemmLayer], dict[str, LayerSparsity]]
"""Layers and their per-layer sparsity descriptors, as `simulate` takes them."""


@functools.lru_cache(maxsize=16)
def lower(model: str, batch: int, sha256: str = "",
          input_shape: str = "") -> tuple[GemmLayer, ...]:
    """The model's layers without their weights (synthetic masks need only shapes).

    Args:
        sha256: the content the caller expects of a topology file ``model``
            (`DesignPoint.model_sha256`, `input_sha256`); empty for a zoo model.
        input_shape: an ONNX model's input shapes (`DesignPoint.input_shape`); empty: none.

    Raises:
        UserError: see `accel_sim.sources.load_layers`; a topology file whose content is not
            ``sha256``.
    """
    layers = tuple(load_layers(model, batch=batch, weights=False,
                               input_shape=input_shape or None))
    _same_input(model, sha256, "topology file")
    return layers


def draw(layers: Sequence[GemmLayer], point: DesignPoint) -> Network:
    """The synthetic masks of ``point``'s group (equal for every point of the group)."""
    layers, descriptors = synthetic_network(list(layers), point.scheme, point.density,
                                            point.seed, parse_nm(point.nm), point.block,
                                            point.plan)
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
    return evaluate_batch(points, draw(lower(*points[0].network), points[0]))


_UNREADABLE = (pa.ArrowException, OSError, ValueError, TypeError)  # what a bad fragment raises


def _done(out: Path) -> dict[Path, list[tuple[str, int]]]:
    """The fragments under ``out/parts`` and the (point key, rows) each holds, from footers; a
    fragment whose footer does not read is set aside (`_set_aside`)."""
    done = {}
    for path in sorted((out / PARTS).glob("part-*.parquet")):
        try:
            meta = pq.read_schema(path).metadata or {}
            if _POINTS_META in meta:
                done[path] = [(str(key), int(rows))
                              for key, rows in json.loads(meta[_POINTS_META])]
        except _UNREADABLE as err:
            _set_aside(path, str(err))
    return done


def _set_aside(path: Path, why: str) -> None:
    """Move a fragment that does not read to ``parts/corrupt/`` under a name not taken there
    (never deleting one), with one warning line on stderr; its points are then not done."""
    folder = path.parent / CORRUPT
    folder.mkdir(exist_ok=True)
    target, copies = folder / path.name, 0
    while target.exists():
        copies += 1
        target = folder / f"{path.stem}.{copies}{path.suffix}"
    path.rename(target)
    print(f"warning: sweep fragment {path} does not read ({one_line(why)}): moved to {target}, "
          "its points run again", file=sys.stderr)


def _read_parts(done: dict[Path, list[tuple[str, int]]],
                points: Sequence[DesignPoint]) -> dict[Path, pa.Table]:
    """The fragments of ``done`` that hold any of ``points``, read in one dataset scan (page
    checksums verified). One that does not read, or whose rows are not the count its footer
    lists, is set aside (`_set_aside`) and dropped from ``done``, so that its points run again.
    """
    wanted = {point.key for point in points}
    paths = [path for path, listing in done.items() if any(key in wanted for key, _ in listing)]
    problems: dict[Path, str] = {}
    try:
        tables = _scan(paths)
    except _UNREADABLE:  # find the fragments that do not read, one by one
        tables = {}
        for path in paths:
            try:
                tables.update(_scan([path]))
            except _UNREADABLE as err:
                problems[path] = str(err)
    for path in paths:
        listed = sum(n for _, n in done[path])
        rows = tables[path].num_rows if path in tables else 0
        if path not in problems and rows != listed:
            problems[path] = f"{rows} rows where its footer lists {listed}"
    for path, why in problems.items():
        _set_aside(path, why)
        del done[path]
        tables.pop(path, None)
    return tables


def _scan(paths: Sequence[Path]) -> dict[Path, pa.Table]:
    """The rows of each fragment of ``paths`` (those that hold some), from one dataset scan.

    Each scanned row's fragment comes from the scan itself (``__filename``), so the order in
    which the scan yields fragments does not matter; within a fragment, rows keep their order.
    """
    if not paths:
        return {}
    parquet = pads.ParquetFileFormat(default_fragment_scan_options=pads.ParquetFragmentScanOptions(
        page_checksum_verification=True))
    dataset = pads.dataset([str(path) for path in paths], format=parquet)
    scanned = dataset.to_table(columns=[*dataset.schema.names, "__filename"])
    names, inverse, counts = np.unique(np.asarray(scanned.column("__filename").to_pylist()),
                                       return_inverse=True, return_counts=True)
    ordered = scanned.drop_columns("__filename").take(np.argsort(inverse, kind="stable"))
    starts = np.cumsum(counts) - counts
    return {Path(name): ordered.slice(first, count)
            for name, first, count in zip(names, starts, counts, strict=True)}


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
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp, write_page_checksum=True))


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
    """Check the points not done yet and run them on Dask, write the final table, and time the
    client.

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
        UserError: no points, ``workers`` or ``batch_points`` below 1, a point's network
            `check_points` refuses (before any cluster starts), or the scheduler cannot be
            reached.
    """
    from dask.distributed import Client, as_completed

    start = time.perf_counter()  # after the import: a client imports dask once, not per sweep
    waited = cluster_s = 0.0
    if not points:
        raise UserError("the sweep has no design points")
    if batch_points is not None and batch_points < 1:
        raise UserError(f"batch_points {batch_points} must be at least 1")
    if workers is not None:
        ranges.SWEEP_WORKERS.check(workers, "workers")
    out = Path(out)
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    done = _done(out)
    tables = _read_parts(done, points)  # then the fragments written by this call, as written
    have = {key for listing in done.values() for key, _ in listing}
    todo = list(dict.fromkeys(p for p in points if p.key not in have))
    check_points(todo)
    tasks = 0
    if todo:
        cluster, tick = None, time.perf_counter()
        if scheduler is None:
            cluster = local_cluster(workers or os.cpu_count() or 1)
        try:
            client = Client(cluster or scheduler, timeout="20s")
        except OSError as err:
            raise UserError(f"cannot reach the Dask scheduler {scheduler}: {err}") from None
        bar = progress_bar(progress=progress, total=len(points), initial=len(points) - len(todo),
                           unit="point", desc="sweep")
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
                if first.network in networks:
                    pass
                elif first.model_sha256:  # a file here, maybe not on the workers
                    networks[first.network] = client.scatter([lower(*first.network)],
                                                             hash=False)[0]
                    tasks -= 1
                else:
                    networks[first.network] = client.submit(
                        lower, *first.network, pure=False, priority=2 * len(order) + 2)
                if first.group not in masks:
                    masks[first.group] = client.submit(
                        draw, networks[first.network], first, pure=False,
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
                tables[path] = table
                bar.update(len(batch))
        finally:
            bar.close()  # its line ends before anything else is printed (Ctrl-C, an error)
            tick = time.perf_counter()
            client.close()
            if cluster is not None:
                cluster.close()
            cluster_s += time.perf_counter() - tick
    table = _final_table(points, done, tables)
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

    Started from the main thread, the workers ignore SIGINT (Ctrl-C in a terminal reaches the
    whole process group; the client alone stops the sweep and closes the cluster, so the
    workers print nothing); so does the client while the workers start, about a second.

    Raises:
        UserError: ``workers`` outside `crisp.ranges.SWEEP_WORKERS`.
    """
    import dask
    from dask.distributed import LocalCluster

    ranges.SWEEP_WORKERS.check(workers, "workers")  # LocalCluster waits forever for none
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None  # workers inherit
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                              "distributed.worker.profile.enabled": False}):
            return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        if main:
            signal.signal(signal.SIGINT, handler)


def _worker_count(client: object) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def _final_table(
    points: Sequence[DesignPoint], done: dict[Path, list[tuple[str, int]]],
    tables: dict[Path, pa.Table],
) -> pa.Table:
    """The rows of ``points``, in their order, from the fragments ``tables`` (path -> rows, in
    the order of the points ``done`` lists for it): those of an earlier call as `_read_parts`
    read them, those this call wrote as written (reading them back would cost the client a
    scan of every fragment after the last batch)."""
    where: dict[str, tuple[int, int]] = {}  # point key -> (first row, rows) in all tables
    start = 0
    for path in tables:
        for key, count in done[path]:
            where.setdefault(key, (start, count))
            start += count
    index = [np.arange(first, first + count) for first, count in (where[p.key] for p in points)]
    table = pa.concat_tables([table.replace_schema_metadata(None) for table in tables.values()])
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
    """The points of ``points`` that ``out`` holds no result for yet (a fragment whose footer
    does not read is set aside, `_done`)."""
    have = {key for listing in _done(Path(out)).values() for key, _ in listing}
    return [p for p in points if p.key not in have]
