"""Sparse hardware: N:M multiplexers, block skipping, hybrid, unstructured and channel pruning."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from accel_sim.hardware import build_hardware
from accel_sim.mapper import run_layer
from accel_sim.mapping import SCALESIM, Mapping, plan_folds
from accel_sim.packing import Packing, first_need
from accel_sim.simulate import compare, simulate
from accel_sim.sparsity import (
    DENSE,
    LayerSparsity,
    from_mask,
    from_weight,
    nm_for_density,
    prune_channels,
    synthetic,
)
from accel_sim.workload import GemmLayer
from crisp.errors import UserError


def sparse_hw(rows: int = 8, cols: int = 8, nm: str = "2:4", bandwidth: float = math.inf,
              blocks: bool = True):
    return build_hardware({"array": {"rows": rows, "cols": cols},
                           "memory": {"dram_bytes_per_cycle": bandwidth},
                           "sparse": {"nm": nm, "block_skipping": blocks, "zero_gating": True}})


layer_shapes = st.tuples(st.integers(1, 40), st.integers(1, 64), st.integers(1, 24))
SCALESIM_AND_TILED = (SCALESIM, Mapping("tij", 3), Mapping("ijt", 5))


def test_nm_halves_compute_when_k_is_a_multiple_of_rows() -> None:
    layer = GemmLayer("x", "conv", P=200, K=256, N=64)
    sp = synthetic(layer, "nm", 0.5, np.random.default_rng(0))
    dense = run_layer(layer, sparse_hw(32, 32))
    nm = run_layer(layer, sparse_hw(32, 32), sp)
    assert nm.folds * 2 == dense.folds
    assert nm.compute_cycles / dense.compute_cycles == pytest.approx(0.5, abs=0.01)
    assert nm.counts[("mux", "select")] == 200 * 128 * 64
    assert nm.edge_stall_cycles == 0  # the default edge carries R * M/N words per cycle


def test_nm_without_edge_bandwidth_stalls() -> None:
    layer = GemmLayer("x", "conv", P=200, K=256, N=64)
    sp = synthetic(layer, "nm", 0.5, np.random.default_rng(0))
    hw = build_hardware({"array": {"rows": 32, "cols": 32},
                         "memory": {"ifmap_words_per_cycle": 32}, "sparse": {"nm": "2:4"}})
    assert run_layer(layer, hw, sp).edge_stall_cycles == 8 * 200  # 8 folds, each streams 2T


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), layer_shapes,
       st.sampled_from([None, (1, 4), (2, 4), (3, 4), (1, 8)]), st.integers(1, 20),
       st.sampled_from(["ws", "os", "is"]), st.sampled_from(list(SCALESIM_AND_TILED)),
       st.integers(0, 2**32 - 1))
@example(4, 4, (8, 8, 4), None, 3, "ws", SCALESIM, 0)  # d(r) one above the edge
@example(4, 4, (8, 8, 4), None, 3, "os", SCALESIM, 0)  # r x d(s) one above s x the edge
@example(4, 4, (8, 16, 4), (1, 4), 15, "ws", SCALESIM, 0)  # 1:M: d(r) = 4r
def test_edge_stalls_are_the_activations_a_fold_needs_over_the_edge(
        R, C, shape, nm, edge, dataflow, mapping, seed) -> None:
    """The input edge delivers ``edge`` words a cycle, ``d(x) = ceil(x/N)*M`` activations feed x
    packed positions (x without N:M). Per fold of r rows and s steps: WS streams s steps of
    d(r) words, OS r rows of d(s) words, each stalling ``max(0, ceil(words/edge) - s)``; IS
    loads d(r) words a row into its stationary tile, ``max(0, d(r) - R)`` when the fold does
    not continue the previous one's stream."""
    P, K, N = shape
    layer = GemmLayer("x", "conv", P=P, K=K, N=N)
    hw = build_hardware({"array": {"rows": R, "cols": C, "dataflow": dataflow},
                         "memory": {"ifmap_words_per_cycle": edge},
                         "sparse": {"nm": "none" if nm is None else "{}:{}".format(*nm)}})
    sp = (DENSE if nm is None else
          synthetic(layer, "nm", nm[0] / nm[1], np.random.default_rng(seed), nm))
    plan = plan_folds(layer, hw, sp, mapping)
    n, m = plan.nm or (1, 1)
    for r, s, fill, e in zip(plan.rows, plan.stream, plan.fill, plan.edge_stall, strict=True):
        d_r, d_s = math.ceil(r / n) * m, math.ceil(s / n) * m
        expected = {"ws": math.ceil(s * d_r / edge) - s, "os": math.ceil(r * d_s / edge) - s,
                    "is": d_r - R if fill else 0}[dataflow]
        assert e == max(0, expected)


def test_unsupported_patterns_run_dense_or_as_the_hardware_pattern() -> None:
    layer = GemmLayer("x", "conv", P=50, K=64, N=16)
    rng = np.random.default_rng(1)
    dense = run_layer(layer, sparse_hw()).compute_cycles
    one_four = synthetic(layer, "nm", 0.25, rng)
    two_four = synthetic(layer, "nm", 0.5, rng)
    assert run_layer(layer, sparse_hw(), one_four).compute_cycles == \
        run_layer(layer, sparse_hw(), two_four).compute_cycles  # 1:4 runs as 2:4
    assert run_layer(layer, sparse_hw(nm="none"), two_four).compute_cycles == dense
    four_eight = np.zeros((16, 64), bool)
    four_eight[:, :4] = True  # 4:8 that breaks 2:4
    sp = from_mask(layer, four_eight, "nm", (4, 8))
    assert run_layer(layer, sparse_hw(), sp).compute_cycles == dense


@settings(max_examples=40, deadline=None)
@given(layer_shapes, st.integers(0, 2**32 - 1), st.sampled_from([2, 4, 8, 16]))
def test_more_zero_blocks_never_cost_more(shape, seed: int, b: int) -> None:
    P, K, N = shape
    layer = GemmLayer("x", "conv", P=P, K=K, N=N)
    rng = np.random.default_rng(seed)
    mask = rng.random((N, K)) < 0.5
    fewer = mask & (rng.random((N, K)) < 0.5)
    hw = sparse_hw(bandwidth=4.0)
    more = run_layer(layer, hw, from_mask(layer, mask, "block", None, b))
    less = run_layer(layer, hw, from_mask(layer, fewer, "block", None, b))
    assert less.compute_cycles <= more.compute_cycles
    assert less.counts[("ifmap_sram", "read")] <= more.counts[("ifmap_sram", "read")]


@settings(max_examples=40, deadline=None)
@given(layer_shapes, st.integers(0, 2**32 - 1),
       st.sampled_from(["unstructured", "nm", "block", "hybrid"]),
       st.sampled_from([0.5, 0.25, 0.125]))
def test_sparse_invariants(shape, seed: int, scheme: str, density: float) -> None:
    P, K, N = shape
    layer = GemmLayer("x", "conv", P=P, K=K, N=N)
    sp = synthetic(layer, scheme, density, np.random.default_rng(seed), block=4)
    hw = sparse_hw()
    dense = run_layer(layer, hw)
    run = run_layer(layer, hw, sp)
    assert run.compute_cycles <= dense.compute_cycles
    assert run.total_cycles <= dense.total_cycles  # ideal bandwidth
    assert run.effective_macs == P * int(sp.mask.sum())  # MACs = non-zero products
    assert run.counts[("mac", "active")] == run.effective_macs  # zero gating
    if scheme == "unstructured":
        assert run.compute_cycles == dense.compute_cycles


def test_from_weight_reads_zeros_and_checks_shape() -> None:
    w = np.array([[0.0, 1.0, 0.0, 2.0], [3.0, 0.0, 0.0, 0.0]], np.float32)
    layer = GemmLayer("x", "linear", P=4, K=4, N=2, weight=w)
    sp = from_weight(layer, "nm", 2, 4)
    assert sp.nonzeros(layer) == 3
    with pytest.raises(UserError, match="mask shape"):
        from_mask(GemmLayer("y", "linear", P=1, K=3, N=2), np.ones((2, 4), bool), "unstructured")
    with pytest.raises(UserError, match="needs an N:M pattern"):
        LayerSparsity("hybrid", block=4)
    with pytest.raises(UserError, match=r"allowed 0\.75"):
        nm_for_density(0.3)


@pytest.mark.parametrize("dataflow", ["os", "is"])
def test_nm_and_blocks_shorten_os_and_is(dataflow: str) -> None:
    """OS: K streams in time, so N:M and skipped blocks shorten T; IS: K is the row dimension."""
    layer = GemmLayer("x", "conv", P=64, K=256, N=64)
    hw = sparse_hw(32, 32)
    hw = build_hardware({"array": {"rows": 32, "cols": 32, "dataflow": dataflow},
                         "sparse": {"nm": "2:4", "block_skipping": True}})
    rng = np.random.default_rng(0)
    dense = run_layer(layer, hw, mapping="scalesim")
    nm = run_layer(layer, hw, synthetic(layer, "nm", 0.5, rng), mapping="scalesim")
    hybrid = run_layer(layer, hw, synthetic(layer, "hybrid", 0.25, rng, block=32),
                       mapping="scalesim")
    if dataflow == "os":  # one fold per (pixel, filter) tile streams K*N/M steps
        fill = 32 + 32 - 2
        assert nm.compute_cycles == 2 * 2 * (fill + 128) - 1
    else:  # K folds halve
        assert nm.folds * 2 == dense.folds
    assert hybrid.compute_cycles < nm.compute_cycles < dense.compute_cycles
    assert nm.counts[("mux", "select")] > 0


def test_channel_pruning_shrinks_consistently() -> None:
    layers = [GemmLayer("c1", "conv", P=64, K=27, N=32, kernel=(3, 3),
                        in_shape=(1, 3, 8, 8), out_shape=(1, 32, 8, 8)),
              GemmLayer("dw", "depthwise", P=64, K=9, N=1, groups=32, kernel=(3, 3),
                        in_shape=(1, 32, 8, 8), out_shape=(1, 32, 8, 8)),
              GemmLayer("c2", "conv", P=64, K=32, N=64,
                        in_shape=(1, 32, 8, 8), out_shape=(1, 64, 8, 8)),
              GemmLayer("fc", "linear", P=1, K=64 * 4, N=10, in_shape=(1, 256), out_shape=(1, 10))]
    small = prune_channels(layers, 0.25)  # keep half the channels
    assert [(la.K, la.N, la.groups) for la in small] == [(27, 16, 1), (9, 1, 16), (16, 32, 1),
                                                         (128, 10, 1)]
    # Activation shapes follow the kept channels (the ifmap traffic is priced from them).
    assert [(la.in_shape[1], la.out_shape[1]) for la in small] == [(3, 16), (16, 16), (16, 32),
                                                                   (128, 10)]


def test_compare_ratios_and_simulate_errors() -> None:
    layers = [GemmLayer("a", "conv", P=30, K=64, N=32), GemmLayer("b", "conv", P=30, K=32, N=16)]
    result = compare(layers, sparse_hw(), ["dense", "unstructured", "hybrid"], 0.25, seed=3,
                     block=8)
    totals = result.totals.set_index("scheme")
    assert totals.loc["dense", "speedup_vs_dense"] == 1
    assert totals.loc["hybrid", "speedup_vs_dense"] > 1
    assert totals.loc["unstructured", "compute_cycles"] == totals.loc["dense", "compute_cycles"]
    assert len(result.frame) == 3 * 3
    with pytest.raises(UserError, match="unknown layer 'zz'"):
        simulate(layers, sparse_hw(), {"zz": DENSE})


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 70), st.integers(1, 24),
       st.integers(1, 24), st.sampled_from([2, 4, 8, 16]), st.floats(0.0, 1.0),
       st.integers(0, 2**32 - 1))
def test_mask_statistics_match_their_definitions(groups: int, n: int, k: int, tile_n: int,
                                                 tile_k: int, m: int, density: float,
                                                 seed: int) -> None:
    """Tile sums, block bitmap, N:M group maximum and non-zeros (Numba kernels, cached per mask)
    against plain numpy written from their docstrings, ragged edges included."""
    mask = np.random.default_rng(seed).random((groups * n, k)) < density
    spec = LayerSparsity("block", mask, None, tile_n)
    per_group = mask.reshape(groups, n, k)

    def tiles(rows: int, cols: int) -> np.ndarray:
        want = np.zeros((groups, -(-n // cols), -(-k // rows)), np.int64)
        for a, r, c in zip(*np.nonzero(per_group), strict=True):
            want[a, r // cols, c // rows] += 1
        return want

    # cell sums; then a stream tile against a multiple of 8 (running counts); again (cached)
    for side_k, side_n in ((tile_k, tile_n), (8, tile_n), (16, tile_n), (tile_k, 8),
                           (tile_k, 16), (tile_k, tile_n), (8, tile_n)):
        assert np.array_equal(spec.tile_nonzeros(groups, side_k, side_n), tiles(side_k, side_n))
    b = tile_n
    rows = -(-groups * n // b)
    bitmap = [[mask[q * b:(q + 1) * b, t * b:(t + 1) * b].any() for t in range(-(-k // b))]
              for q in range(rows)]
    assert spec.block_bitmap.tolist() == bitmap
    groups_of_m = [mask[:, s:s + m].sum(axis=1).max() for s in range(0, k, m)]
    most = int(max(groups_of_m))
    assert spec.satisfies_nm(most, m)
    assert most == 0 or not spec.satisfies_nm(most - 1, m)
    assert spec.nonzeros(GemmLayer("x", "linear", 1, k, groups * n)) == int(mask.sum())


@pytest.mark.parametrize(("shape", "rows", "cols"), [((9000, 11), 8, 5), ((9, 9000), 7, 8)])
def test_running_counts_past_uint16(shape: tuple[int, int], rows: int, cols: int) -> None:
    """Running counts of a side over 8,191 overflow uint16: they are kept in int32."""
    mask = np.random.default_rng(1).random(shape) < 0.99  # a running count reaches 71,000
    want = np.zeros((-(-shape[0] // cols), -(-shape[1] // rows)), np.int64)
    for r, c in zip(*np.nonzero(mask), strict=True):
        want[r // cols, c // rows] += 1
    assert np.array_equal(LayerSparsity("unstructured", mask).tile_nonzeros(1, rows, cols)[0],
                          want)


class _AddsWhilePickled:
    """A cached value whose pickling adds to the descriptor's caches, as a Dask worker's task
    thread may while the worker sends the descriptor to another worker."""

    def __init__(self, spec: LayerSparsity) -> None:
        self.spec = spec

    def __reduce__(self) -> tuple:
        self.spec.derived(("packing", len(self.spec.__dict__["_derived"])), lambda: 0)
        _ = self.spec.block_rows_before  # a cached property: a new key in __dict__
        return (int, (7,))


def test_a_copy_carries_the_summary_not_per_array_data() -> None:
    layer = GemmLayer("x", "linear", 1, 64, 16, groups=2)
    spec = synthetic(layer, "hybrid", 0.25, np.random.default_rng(0), block=8)
    assert spec.summarize(layer) is spec
    spec.tile_nonzeros(2, 8, 8)  # per-array: cell counts
    spec.derived(("io counts", 99), lambda: _AddsWhilePickled(spec))
    copy = pickle.loads(pickle.dumps(spec))
    kinds = {key[0] for key in copy.__dict__["_derived"]}
    assert kinds == {"group max", "io counts"}  # no cell counts, no packing
    assert copy.__dict__["_derived"]["io counts", 99] == 7
    assert copy.io_counts(2) == spec.io_counts(2)
    assert copy.nonzeros(layer) == spec.nonzeros(layer) == int(spec.mask.sum())
    assert np.array_equal(copy.block_rows_before, spec.block_rows_before)
    assert np.array_equal(copy.mask, spec.mask)
    assert copy == spec and copy.satisfies_nm(2, 4)


def test_a_copy_carries_its_mask_packed() -> None:
    mask = np.random.default_rng(0).random((300, 77)) < 0.5  # K not a multiple of 8
    spec = LayerSparsity("unstructured", mask)
    blob = pickle.dumps(spec)
    assert len(blob) < mask.nbytes / 6  # a bit per weight, and the fields
    copy = pickle.loads(blob)
    assert copy.mask.dtype == np.bool_ and copy.mask.flags.c_contiguous
    assert np.array_equal(copy.mask, mask)
    assert pickle.loads(pickle.dumps(LayerSparsity("dense"))) == LayerSparsity("dense")


def _first_need_oracle(need_blocks: np.ndarray, b: int, k: int, nm: tuple[int, int] | None,
                       rows_per_fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """first_need from its definition: a K unit (an index, or M of them with N:M) is streamed
    by a fold of filters that keeps a block holding one of its indices, at packed position =
    the streamed units before it (N positions a unit with N:M), in row fold position // R; it is
    fetched by the first (fold, row fold) that streams it in j-major order (folds outer) and
    in i-major order (row folds outer)."""
    unit, unit_rows, words = (nm[1], nm[0], nm[1]) if nm else (1, 1, 1)
    g, f, _ = need_blocks.shape
    index = np.repeat(need_blocks, b, axis=2)[:, :, :k]
    units = np.zeros((g, f, -(-k // unit)), bool)
    for x in range(k):
        units[:, :, x // unit] |= index[:, :, x]
    row_fold = (np.cumsum(units, axis=2) - units) * unit_rows // rows_per_fold
    folds = max(1, -(-int(units.sum(axis=2).max(initial=0)) * unit_rows // rows_per_fold))
    new_j, new_i = np.zeros((g, f, folds), np.int64), np.zeros((g, f, folds), np.int64)
    union = np.zeros(g, np.int64)
    for a in range(g):
        for x in range(units.shape[2]):
            streams = [fold for fold in range(f) if units[a, fold, x]]
            if streams:
                j_major = streams[0]
                i_major = min(streams, key=lambda fold: (row_fold[a, fold, x], fold))
                new_j[a, j_major, row_fold[a, j_major, x]] += words
                new_i[a, i_major, row_fold[a, i_major, x]] += words
                union[a] += words
    return new_j, new_i, union


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 2), st.integers(1, 4), st.sampled_from([1, 2, 4, 8]), st.integers(1, 40),
       st.sampled_from([None, (1, 2), (2, 4), (1, 4), (3, 8)]), st.integers(1, 8),
       st.integers(0, 2**32 - 1))
@example(1, 2, 4, 16, (2, 4), 1, 0)  # a unit's N positions span more than a row fold
def test_first_need_fetches_each_unit_with_the_first_fold_that_streams_it(
        g, f, b, k, nm, rows_per_fold, seed) -> None:
    need_blocks = np.random.default_rng(seed).random((g, f, -(-k // b))) < 0.5
    units = _first_need_oracle(need_blocks, b, k, nm, rows_per_fold)
    unit, unit_rows = (nm[1], nm[0]) if nm else (1, 1)
    streamed = np.repeat(need_blocks, b, axis=2)[:, :, :k]
    padded = np.pad(streamed, ((0, 0), (0, 0), (0, -k % unit)))
    rows = padded.reshape(g, f, -1, unit).any(axis=3).sum(axis=2) * unit_rows
    packing = Packing(rows.astype(np.int64), need_blocks, b, k, nm, need_blocks.sum(axis=2), 4)
    for got, want in zip(first_need(packing, rows_per_fold), units, strict=True):
        assert np.array_equal(got, want)
