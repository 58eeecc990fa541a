"""Sweeps on Dask: results equal direct simulations, batches appended as fragments, resume."""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from accel_sim import sweep
from accel_sim.cli import main
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.sparsity import synthetic_network
from accel_sim.sweep import DesignPoint, execute_sweep, grid, pending, run_sweep
from accel_sim.workload import write_topology_csv
from crisp.errors import UserError

SCHEMES = ["dense", "channel", "nm", "hybrid"]


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """An in-process cluster (threads): the sweep connects to it as to a remote scheduler."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _direct(points: list[DesignPoint]) -> pd.DataFrame:
    """Each point simulated on its own, its fields as columns, in the points' order."""
    frames = []
    for point in points:
        n, m = (int(v) for v in point.nm.split(":"))
        layers = [replace(layer, weight=None) for layer in
                  load_layers(point.model, point.batch, input_shape=point.input_shape or None)]
        layers, descriptors = synthetic_network(layers, point.scheme, point.density, point.seed,
                                                (n, m), point.block)
        hw = point.hardware()
        frame = simulate(layers, hw, descriptors).frame
        frame["schedule"] = frame["mapping"]
        for name, value in asdict(point).items():
            frame[name] = value
        for name in sweep.MEMORY_COLUMNS:
            frame[name] = float(getattr(hw.memory, name))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_grid_runs_dense_once_per_array_and_keys_are_stable() -> None:
    points = grid(["resnet_small"], ["dense", "hybrid"], [0.5, 0.25], [(8, 8), (16, 8)])
    assert sum(p.scheme == "dense" for p in points) == 2
    assert sum(p.scheme == "hybrid" for p in points) == 4
    assert len({p.key for p in points}) == len(points)
    assert DesignPoint("m", "dense", 1.0, 8, 8).key == DesignPoint("m", "dense", 1.0, 8, 8).key


def test_sweep_table_equals_direct_simulations_row_for_row(scheduler: str, tmp_path) -> None:
    points = grid(["resnet_small"], SCHEMES, [0.25], [(16, 16), (16, 32)], ["ws", "os"], [8, 16])
    run = execute_sweep(points, tmp_path, scheduler, progress=False, batch_points=3)
    assert run.ran == len(points) == 20
    # One lowering, one mask task per group, batches of at most 3 points of one group.
    groups = len({p.group for p in points})
    assert run.tasks == 1 + groups + sum(-(-n // 3) for n in (4, 4, 4, 4, 4))
    frame = run.table.to_pandas()
    pd.testing.assert_frame_equal(frame, _direct(points))
    assert frame.schedule.str.contains(">").all() and (frame.mapping == "best").all()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / sweep.RESULTS), frame)
    # Batches, not points, became files; each footer lists its points.
    parts = sorted((tmp_path / sweep.PARTS).glob("*.parquet"))
    assert len(parts) == run.tasks - 1 - groups
    assert sum(len(sweep._done(tmp_path)[p]) for p in parts) == len(points)
    assert run.wall_s >= run.wait_s >= 0 and run.client_s >= 0


def test_sweep_tracks_its_batches_on_its_own_clients_loop(
    scheduler: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``as_completed`` tracks futures on the *default* client's event loop unless told
    otherwise; with another client as the default (a benchmark's, a notebook's) finished
    batches were only noticed when that loop next woke, in bursts 5 s apart."""
    import dask.distributed
    from dask.distributed import Client

    loops = []

    def spy(futures, loop=None, **kwargs):
        loops.append((loop, {f.client.loop for f in futures}))
        return as_completed(futures, loop=loop, **kwargs)

    as_completed = dask.distributed.as_completed
    monkeypatch.setattr(dask.distributed, "as_completed", spy)
    points = grid(["resnet_small"], ["dense"], [1.0], [(8, 8)])
    with Client(scheduler) as other:
        assert dask.distributed.default_client() is other
        assert execute_sweep(points, tmp_path, scheduler, progress=False).ran == 1
    [(loop, theirs)] = loops
    assert theirs == {loop} and loop is not other.loop


def test_interrupted_sweep_resumes_to_the_same_table(
    scheduler: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = grid(["resnet_small"], ["dense", "block"], [0.5], [(8, 8), (16, 16), (8, 32)],
                  ["ws", "is"])
    whole = run_sweep(points, tmp_path / "whole", scheduler, progress=False)

    write = sweep._write_part
    written = []

    def interrupted(out, table, batch):
        if len(written) == 2:
            raise KeyboardInterrupt  # the user stops the sweep after two batches
        written.append(batch)
        return write(out, table, batch)

    monkeypatch.setattr(sweep, "_write_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute_sweep(points, tmp_path / "cut", scheduler, progress=False, batch_points=2)
    monkeypatch.setattr(sweep, "_write_part", write)
    done = len(points) - len(pending(points, tmp_path / "cut"))
    assert done == sum(map(len, written)) == 4
    assert not list((tmp_path / "cut").rglob("*.tmp"))
    assert not (tmp_path / "cut" / sweep.RESULTS).exists()

    again = execute_sweep(points, tmp_path / "cut", scheduler, progress=False)
    assert again.ran == len(points) - done
    pd.testing.assert_frame_equal(again.table.to_pandas(), whole)
    # Finished: a rerun simulates nothing and reads the same table.
    third = execute_sweep(points, tmp_path / "cut", scheduler, progress=False)
    assert third.ran == 0 and third.tasks == 0 and third.table.equals(again.table)

    # A lost fragment: only its points run again; a subset of the points reads only those.
    lost = sorted((tmp_path / "cut" / sweep.PARTS).glob("*.parquet"))[0]
    keys = {key for key, _ in sweep._done(tmp_path / "cut")[lost]}
    lost.unlink()
    fourth = execute_sweep(points, tmp_path / "cut", scheduler, progress=False)
    assert fourth.ran == len(keys)
    pd.testing.assert_frame_equal(fourth.table.to_pandas(), whole)
    subset = execute_sweep(points[::2], tmp_path / "cut", scheduler, progress=False)
    assert subset.ran == 0
    pd.testing.assert_frame_equal(subset.table.to_pandas(), _direct(points[::2]))


def test_fragments_are_arrow_tables_with_their_points_in_the_footer(tmp_path) -> None:
    points = [DesignPoint("resnet_small", "nm", 0.5, r, c) for r, c in ((8, 8), (16, 8))]
    table = sweep.evaluate_group(points)
    path = sweep._write_part(tmp_path, table, points)
    assert pq.read_table(path).num_rows == table.num_rows == 2 * len(load_layers("resnet_small"))
    assert sweep._done(tmp_path) == {path: [(p.key, table.num_rows // 2) for p in points]}
    with pytest.raises(UserError, match="no design points"):
        execute_sweep([], tmp_path)


def test_topology_csv_is_read_by_the_client(scheduler: str, tmp_path) -> None:
    topology = tmp_path / "net.csv"
    write_topology_csv(load_layers("resnet_small")[:4], topology)
    points = grid([str(topology)], ["dense", "nm"], [0.5], [(8, 8)])
    run = execute_sweep(points, tmp_path / "out", scheduler, progress=False)
    assert run.tasks == 2 + 2  # no lowering task: the client sent the layers
    pd.testing.assert_frame_equal(run.table.to_pandas(), _direct(points))


def test_an_onnx_model_with_dynamic_dims_sweeps_at_its_input_shape(
    scheduler: str, tmp_path, capsys
) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.arange(1, 8 * 16 + 1, dtype=np.float32).reshape(8, 16)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "fc.weight")])
    path = str(tmp_path / "dyn.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(UserError, match=r"dynamic dims.*--input-shape"):
        grid([path], ["dense"], [1.0], [(8, 8)])
    points = grid([path, "resnet_small"], ["dense", "nm"], [0.5], [(8, 8)], input_shape="5x16")
    assert {(p.model, p.input_shape) for p in points} == {(path, "5x16"), ("resnet_small", "")}
    mine = [p for p in points if p.model == path]
    run = execute_sweep(mine, tmp_path / "out", scheduler, progress=False)
    table = run.table.to_pandas()
    pd.testing.assert_frame_equal(table, _direct(mine))
    assert set(table.P) == {5}  # the batch the shape gives, not the file's dynamic dim
    with pytest.raises(UserError, match="resnet_small is not an ONNX model"):
        DesignPoint("resnet_small", "dense", 1.0, 8, 8, input_shape="1x3x32x32")
    with pytest.raises(UserError, match="joined by 'x'"):
        DesignPoint(path, "dense", 1.0, 8, 8, input_shape="5,16")
    out = tmp_path / "cli"
    assert main(["sweep", "--models", path, "--schemes", "dense", "--arrays", "8x8",
                 "--input-shape", "2x16", "--scheduler", scheduler, "--no-figures",
                 "--out", str(out)]) == 0
    assert set(pd.read_parquet(out / "results.parquet").input_shape) == {"2x16"}


def test_cli_sweep_without_figures(scheduler: str, tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    assert main(["sweep", "--models", "resnet_small", "--schemes", "nm", "--arrays", "8x8",
                 "--scheduler", scheduler, "--no-figures", "--out", str(out)]) == 0
    assert "figures: none" in capsys.readouterr().out
    assert len(pd.read_parquet(out / "results.parquet").drop_duplicates(["scheme"])) == 2
    assert not (out / "figures").exists()


def test_draw_summarizes_the_masks_it_sends() -> None:
    """The masks task computes the per-mask statistics once; copies sent to workers carry them."""
    point = DesignPoint("resnet_small", "hybrid", 0.25, 8, 8, block=8)
    layers, descriptors = sweep.draw(sweep.lower(*point.network), point)
    masked = [la for la in layers if descriptors[la.name].mask is not None]  # first conv: dense
    assert len(masked) == len(layers) - 1
    for layer in masked:
        spec = descriptors[layer.name]
        assert {("io counts", layer.groups), ("group max", 4)} <= set(spec.__dict__["_derived"])
        assert "_mask_nonzeros" in spec.__dict__
        assert ("block_rows_before" in spec.__dict__) == (spec.block is not None)  # head: N:M


def test_a_worker_given_a_copy_of_the_masks_computes_the_same_rows() -> None:
    """A copy of a group's masks (pickled as Dask sends it, after the sending worker ran a batch
    and cached per-array data on it) gives the same rows as the original."""
    points = grid(["resnet_small"], ["unstructured", "nm", "block", "hybrid"], [0.25],
                  [(8, 8), (16, 8)], ["ws", "is"], [8])
    for members in sweep._batches(points, len(points)):  # one batch per mask group
        network = sweep.draw(sweep.lower("resnet_small", 1), members[0])
        here = sweep.evaluate_batch(members, network)
        copy = pickle.loads(pickle.dumps(network))
        assert sweep.evaluate_batch(members, copy).equals(here)


def test_the_speed_benchmark_reads_the_steal_column_of_proc_stat(tmp_path) -> None:
    """`sweep_speed.py` reports CPU seconds the host stole: the eighth number of the cpu line."""
    from benchmarks.sweep_speed import stolen_cpu

    stat = tmp_path / "stat"
    stat.write_text("cpu  10 20 30 40 50 60 70 400 90 100\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert stolen_cpu(str(stat)) == 400 / os.sysconf("SC_CLK_TCK")
    for text in ("intr 1 2 3 4 5 6 7 8 9\n", ""):
        stat.write_text(text)
        assert stolen_cpu(str(stat)) is None
    assert stolen_cpu(str(tmp_path / "absent")) is None


def _my_hardware(tmp_path) -> str:
    """A user's hardware file: edge-32x32 with 48 KiB SRAMs and 12 B/cycle of DRAM."""
    path = tmp_path / "my.toml"
    path.write_text('name = "mine"\n[array]\nrows = 32\ncols = 32\ndataflow = "ws"\n'
                    "[memory]\nifmap_sram_kib = 48\nfilter_sram_kib = 48\nofmap_sram_kib = 48\n"
                    'dram_bytes_per_cycle = 12.0\n[sparse]\nnm = "2:4"\nblock_skipping = true\n')
    return str(path)


def test_a_file_sweep_runs_the_files_memory_as_accel_sim_run_does(
    scheduler: str, tmp_path
) -> None:
    hw = _my_hardware(tmp_path)
    points = grid(["resnet_small"], ["dense", "hybrid"], [0.25], [(16, 16), (64, 64)], hw=hw)
    assert all(p.scale_memory is False for p in points)
    frame = run_sweep(points, tmp_path / "sweep", scheduler, progress=False)
    assert (frame[list(sweep.MEMORY_COLUMNS)].drop_duplicates().to_numpy()
            == [[48.0, 48.0, 48.0, 12.0]]).all()
    assert not frame.scale_memory.any()
    for rows, scheme in ((16, "hybrid"), (64, "dense")):
        out = tmp_path / f"run_{rows}_{scheme}.csv"
        assert main(["run", "resnet_small", "--hw", hw, "--array", f"{rows}x{rows}", "--scheme",
                     scheme, "--density", "0.25", "--out", str(out)]) == 0
        run = pd.read_csv(out)
        run = run[~run.is_total]
        ours = frame[(frame.rows == rows) & (frame.scheme == scheme)]
        assert ours.total_cycles.tolist() == run.total_cycles.tolist()
        assert ours.energy_total_pj.to_numpy() == pytest.approx(run.energy_total_pj.to_numpy())


def test_a_preset_sweep_scales_the_memory_with_the_array_side() -> None:
    """edge-32x32 (64 KiB SRAMs, 16 B/cycle) at 16x16: 32 KiB and 8 B/cycle; at 128x128: 256 KiB
    and 64 B/cycle; at 8x8 the side's 16 KiB, and at 8x128 the side 32's 64 KiB (the tile floor,
    2 x rows x cols bytes, stays below); as before the option existed."""
    points = grid(["resnet_small"], ["dense"], [1.0], [(16, 16), (128, 128), (8, 8), (8, 128)])
    assert all(p.scale_memory for p in points)
    table = sweep.evaluate_group(points).to_pandas().drop_duplicates(["rows", "cols"])
    assert table[["rows", "cols", *sweep.MEMORY_COLUMNS]].values.tolist() == [
        [16, 16, 32.0, 32.0, 32.0, 8.0], [128, 128, 256.0, 256.0, 256.0, 64.0],
        [8, 8, 16.0, 16.0, 16.0, 4.0], [8, 128, 64.0, 64.0, 64.0, 16.0]]
    assert table.scale_memory.all()
    memory = {name: float(getattr(points[0].hardware().memory, name))
              for name in sweep.MEMORY_COLUMNS}
    assert memory == dict(zip(sweep.MEMORY_COLUMNS, (32.0, 32.0, 32.0, 8.0), strict=True))
    off = replace(points[0], scale_memory=False).hardware().memory
    assert (off.ifmap_sram_kib, off.dram_bytes_per_cycle) == (64.0, 16.0)


def test_scale_memory_is_part_of_the_point(scheduler: str, tmp_path) -> None:
    """A resumed sweep with the other setting runs every point again, into its own rows."""
    hw = _my_hardware(tmp_path)
    kept = grid(["resnet_small"], ["nm"], [0.5], [(16, 16)], hw=hw)
    scaled = grid(["resnet_small"], ["nm"], [0.5], [(16, 16)], hw=hw, scale_memory=True)
    assert kept[0].key != scaled[0].key and kept[0].group == scaled[0].group
    first = execute_sweep(kept, tmp_path / "out", scheduler, progress=False)
    again = execute_sweep(scaled, tmp_path / "out", scheduler, progress=False)
    assert first.ran == again.ran == 1
    assert first.table["ifmap_sram_kib"][0].as_py() == 48.0
    assert again.table["ifmap_sram_kib"][0].as_py() == 24.0
    assert again.table["scale_memory"][0].as_py() is True


def test_cli_sweep_scale_memory_flag(scheduler: str, tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = ["sweep", "--models", "resnet_small", "--schemes", "dense", "--arrays", "16x16",
            "--scheduler", scheduler, "--no-figures"]
    assert main([*argv, "--no-scale-memory", "--out", str(out / "off")]) == 0
    assert main([*argv, "--out", str(out / "on")]) == 0
    off = pd.read_parquet(out / "off" / "results.parquet")
    on = pd.read_parquet(out / "on" / "results.parquet")
    assert set(off.ifmap_sram_kib) == {64.0} and not off.scale_memory.any()
    assert set(on.ifmap_sram_kib) == {32.0} and on.scale_memory.all()


def test_sweep_progress_bar_stays_off_when_stderr_is_no_terminal(
    scheduler: str, tmp_path, capsys
) -> None:
    points = grid(["resnet_small"], ["dense"], [1.0], [(8, 8)])
    execute_sweep(points, tmp_path, scheduler, progress=True)
    assert "sweep" not in capsys.readouterr().err


def _total_cycles(out) -> int:
    return int(pd.read_parquet(out / sweep.RESULTS).total_cycles.sum())


def test_an_edited_hardware_file_is_swept_again_not_served_from_its_old_rows(
    scheduler: str, tmp_path
) -> None:
    """The same command after editing ``--hw``: every point runs again, with the file's new
    content, and gives a fresh run's numbers; the key holds the file's SHA-256."""
    hw = _my_hardware(tmp_path)
    argv = ["sweep", "--models", "resnet_small", "--schemes", "dense,hybrid", "--arrays",
            "8x8,16x16", "--hw", hw, "--scheduler", scheduler, "--no-figures"]
    assert main([*argv, "--out", str(tmp_path / "kept")]) == 0
    before = _total_cycles(tmp_path / "kept")
    old = grid(["resnet_small"], ["dense"], [1.0], [(8, 8)], hw=hw)[0]
    Path(hw).write_text(Path(hw).read_text().replace("= 12.0", "= 1.0"))
    new = grid(["resnet_small"], ["dense"], [1.0], [(8, 8)], hw=hw)[0]
    assert new.hw_sha256 != old.hw_sha256 and new.key != old.key
    assert new.hw_sha256 == hashlib.sha256(Path(hw).read_bytes()).hexdigest()
    assert main([*argv, "--out", str(tmp_path / "kept")]) == 0
    assert main([*argv, "--out", str(tmp_path / "fresh")]) == 0
    again = pd.read_parquet(tmp_path / "kept" / sweep.RESULTS)
    pd.testing.assert_frame_equal(again, pd.read_parquet(tmp_path / "fresh" / sweep.RESULTS))
    assert set(again.dram_bytes_per_cycle) == {1.0}
    assert _total_cycles(tmp_path / "kept") > before
    # A worker (a fresh process: nothing cached) refuses a point whose file changed since.
    sweep._base_hardware.cache_clear()
    sweep._hardware.cache_clear()
    with pytest.raises(UserError, match="changed after the sweep's points were made"):
        sweep.evaluate_group([old])


def test_an_edited_topology_file_is_swept_again(scheduler: str, tmp_path) -> None:
    topology = tmp_path / "net.csv"
    layers = load_layers("resnet_small")
    write_topology_csv(layers[:4], topology)
    old = grid([str(topology)], ["dense"], [1.0], [(8, 8)])
    execute_sweep(old, tmp_path / "out", scheduler, progress=False)
    write_topology_csv(layers[:3], topology)
    new = grid([str(topology)], ["dense"], [1.0], [(8, 8)])
    assert new[0].model_sha256 != old[0].model_sha256 and new[0].group != old[0].group
    run = execute_sweep(new, tmp_path / "out", scheduler, progress=False)
    assert run.ran == 1 and run.table.num_rows == 3
    pd.testing.assert_frame_equal(run.table.to_pandas(), _direct(new))
    assert DesignPoint("resnet_small", "dense", 1.0, 8, 8).model_sha256 == ""


BAD_SWEEPS = [
    (["--dataflows", "xs"], "dataflow 'xs': allowed ws, os, is"),
    (["--densities", "nan"], "--densities = 'nan': allowed a number in (0, 1]"),
    (["--models", "nosuch"], "unknown model 'nosuch'"),
    (["--nm", "2:3"], "N:M pattern '2:3'"),
    (["--nm", "none"], "nm 'none': a sweep needs an N:M pattern"),
    (["--hw", "missing.toml"], "hardware file missing.toml cannot be read"),
    (["--hw", "edge-1x1"], "unknown hardware 'edge-1x1'"),
    (["--blocks", "0"], "--blocks = '0': allowed an integer in 1..1024"),
    (["--schemes", "hybrid", "--blocks", "6"], "block 6: hybrid 2:4 needs a block size that is "
     "a multiple of M=4"),
    (["--arrays", "8x0"], "array '8x0'"),
    (["--mapping", "fastest"], "mapping 'fastest': allowed best, scalesim"),
    (["--objective", "area"], "objective 'area'"),
]


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a sweep starts a cluster or connects to one."""
    import dask.distributed

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cluster was started for a grid that should have been refused")

    monkeypatch.setattr(sweep, "local_cluster", refuse)
    monkeypatch.setattr(dask.distributed, "Client", refuse)


@pytest.mark.parametrize(("flags", "message"), BAD_SWEEPS, ids=[" ".join(f) for f, _ in BAD_SWEEPS])
def test_a_bad_grid_is_one_line_before_any_cluster_starts(
    flags: list[str], message: str, tmp_path, capsys, no_cluster: None
) -> None:
    argv = ["sweep", "--models", "resnet_small", "--schemes", "dense,hybrid", "--arrays", "8x8",
            "--no-figures", "--out", str(tmp_path / "out")]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_the_python_api_checks_points_before_any_cluster_starts(
    tmp_path, no_cluster: None
) -> None:
    with pytest.raises(UserError, match="density = nan: allowed"):
        DesignPoint("resnet_small", "block", float("nan"), 8, 8)
    with pytest.raises(UserError, match=r"density 0\.375 has no N:M pattern"):
        grid(["resnet_small"], ["nm"], [0.5], [(8, 8)], nm="3:8")
    with pytest.raises(UserError, match="seed = -1: allowed"):
        grid(["resnet_small"], ["dense"], [1.0], [(8, 8)], seed=-1)
    with pytest.raises(UserError, match="block = 0: allowed"):  # even a block no point keeps
        grid(["resnet_small"], ["dense"], [1.0], [(8, 8)], blocks=[16, 0])
    huge = tmp_path / "slow.toml"  # counts that could pass 2**62: refused, not wrapped around
    huge.write_text('name = "slow"\n[memory]\ndram_bytes_per_cycle = 0.000244140625\n')
    with pytest.raises(UserError, match="above the simulator's 64-bit limit"):
        grid(["resnet50"], ["dense"], [1.0], [(65536, 65536)], hw=str(huge), batch=8192)
    # Points made by hand skip grid: the sweep checks their networks before any cluster.
    with pytest.raises(UserError, match="unknown model 'nosuch'"):
        run_sweep([DesignPoint("nosuch", "dense", 1.0, 8, 8)], tmp_path / "out")
    for workers in (0, -1):
        with pytest.raises(UserError, match=f"workers = {workers}: allowed an integer in 1"):
            run_sweep(grid(["resnet_small"], ["dense"], [1.0], [(8, 8)]), tmp_path, None,
                      workers)


def test_local_cluster_refuses_no_workers() -> None:
    for workers in (0, -1):
        with pytest.raises(UserError, match=f"workers = {workers}: allowed"):
            sweep.local_cluster(workers)


def _corrupt(part, how: str) -> None:
    """Damage one fragment as a crash, a full disk or a stray copy would."""
    data = part.read_bytes()
    if how == "empty":
        part.write_bytes(b"")
    elif how == "garbage":
        part.write_bytes(b"not parquet\n" * 100)
    elif how == "truncated":
        part.write_bytes(data[:len(data) // 2])
    elif how == "flipped byte":  # the footer reads; a data page fails its checksum
        part.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    else:  # footer lists more rows than the fragment holds
        table = pq.read_table(part)
        pq.write_table(table.slice(1).replace_schema_metadata(table.schema.metadata), part)


def test_fragments_that_do_not_read_are_set_aside_and_their_points_run_again(
    scheduler: str, tmp_path, capsys
) -> None:
    points = grid(["resnet_small"], ["dense"], [1.0], [(8, 8), (16, 8), (8, 16), (16, 16),
                                                       (32, 8), (8, 32)])
    out = tmp_path / "out"
    whole = execute_sweep(points, out, scheduler, progress=False, batch_points=1).table
    parts = sorted((out / sweep.PARTS).glob("part-*.parquet"))
    damages = ["empty", "garbage", "truncated", "flipped byte", "short"]
    for part, how in zip(parts, damages, strict=False):
        _corrupt(part, how)
    capsys.readouterr()
    again = execute_sweep(points, out, scheduler, progress=False, batch_points=1)
    assert again.ran == len(damages) and again.table.equals(whole)
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == len(damages)
    for part, line in zip(parts, warnings, strict=False):
        assert line.startswith(f"warning: sweep fragment {part} does not read (")
        assert line.endswith(f"moved to {part.parent / 'corrupt' / part.name}, its points "
                             "run again")
    assert len(list((out / sweep.PARTS / "corrupt").iterdir())) == len(damages)
    assert pq.read_table(out / sweep.RESULTS).equals(whole)
    # Damaged again: the copy set aside before is kept, the new one takes a free name.
    _corrupt(parts[0], "empty")
    assert len(pending(points, out)) == 1
    assert (out / sweep.PARTS / "corrupt" / f"{parts[0].stem}.1.parquet").exists()
    assert execute_sweep(points, out, scheduler, progress=False).table.equals(whole)


def test_ctrl_c_is_one_line_and_status_130_and_the_sweep_resumes(
    tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster (an in-process one, standing in for the embedded cluster) is closed."""
    from dask.distributed import LocalCluster

    clusters = []

    def in_process(workers: int) -> LocalCluster:
        clusters.append(LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                                     dashboard_address=None))
        return clusters[-1]

    def interrupted(out, table, batch):
        raise KeyboardInterrupt  # Ctrl-C while the client waits on the cluster

    monkeypatch.setattr(sweep, "local_cluster", in_process)
    monkeypatch.setattr(sweep, "_write_part", interrupted)
    argv = ["sweep", "--models", "resnet_small", "--schemes", "dense,nm", "--arrays", "8x8",
            "--workers", "1", "--no-figures", "--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert main(argv) == 130
    assert capsys.readouterr().err == "interrupted: re-run the same command to resume\n"
    assert clusters[0].status.name == "closed"
    monkeypatch.undo()
    monkeypatch.setattr(sweep, "local_cluster", in_process)
    assert main(argv) == 0
    assert len(pd.read_parquet(tmp_path / "out" / sweep.RESULTS).drop_duplicates("scheme")) == 2
