"""The mapper: schedules pinned by an independent oracle, traffic floors, psum width, properties."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from accel_sim.energy import energy
from accel_sim.engine import run_plan
from accel_sim.hardware import build_hardware, with_overrides
from accel_sim.mapper import _by_tile, _cost, candidates, clear_memo, map_layer, run_layer
from accel_sim.mapping import (
    LOOPS,
    SCALESIM,
    Mapping,
    fill_cycles,
    geometry,
    plan_folds,
    stream_tiling,
)
from accel_sim.simulate import simulate
from accel_sim.sparsity import DENSE, from_mask, synthetic
from accel_sim.workload import GemmLayer
from crisp.errors import UserError

orders = st.permutations(LOOPS).map("".join)
any_mapping = st.builds(Mapping, orders, st.one_of(st.none(), st.integers(1, 16)),
                        st.one_of(st.none(), st.integers(1, 4)))


def hardware(R: int, C: int, dataflow: str, kib: float = 2.0, bandwidth: float = 4.0,
             psum_bits: int = 32, buffers: int = 1):
    return build_hardware({
        "array": {"rows": R, "cols": C, "dataflow": dataflow, "psum_bits": psum_bits,
                  "weight_buffers": buffers},
        "memory": {"ifmap_sram_kib": kib, "filter_sram_kib": kib, "ofmap_sram_kib": kib,
                   "dram_bytes_per_cycle": bandwidth},
        "sparse": {"nm": "2:4", "block_skipping": True, "zero_gating": True},
    })


def packed_length(mask: np.ndarray, filters: range, k: int, block: int | None,
                  nm: tuple[int, int] | None) -> int:
    """Packed K positions a set of filters streams, from the README's words: blocks tile the
    whole ``[groups*N, K]`` mask; a set of filters visits the K indices of every kept block (one
    holding a non-zero) in the block rows its filters belong to (all of K without block
    skipping); with N:M, N positions per aligned group of M holding such an index."""
    need = np.zeros(k, bool)
    for f in filters:
        row = slice(f - f % block, f - f % block + block) if block else slice(f, f + 1)
        for kb in range(0, k, block or k):
            if block is None or mask[row, kb:kb + block].any():
                need[kb:kb + (block or k)] = True
    if nm is None:
        return int(need.sum())
    return len({int(x) // nm[1] for x in np.flatnonzero(need)}) * nm[0]


def oracle_compute_cycles(layer: GemmLayer, mask: np.ndarray, block: int | None,
                          nm: tuple[int, int] | None, R: int, C: int, dataflow: str,
                          mapping: Mapping, buffers: int = 1) -> int:
    """Compute cycles of ``mapping``, walked fold by fold in plain Python (module semantics:
    a fold costs fill + steps, no fill when it keeps the previous fold's stationary tile).

    With ``buffers=2`` (WS, IS) the result is compute plus edge-stall cycles, from the
    documented events: tile k starts streaming at ``max(start_{k-1} + load_k, end_{k-1})``
    (its load begins when tile k-1 starts; ``load = R``, an IS tile ``max(R, d(r))`` for its
    N:M-expanded activations), streams its folds' steps and edge stalls, and the array drains
    ``R + C - 2`` cycles after the last step."""
    G, P, K, N = layer.groups, layer.P, layer.K, layer.N
    fill = (R if dataflow != "os" else 0) + R + C - 2
    stream_full = {"ws": P, "is": N, "os": max(
        packed_length(mask, range(g * N + j, g * N + min(j + C, N)), K, block, nm)
        for g in range(G) for j in range(0, N, C))}[dataflow]
    t_len = min(mapping.t_tile or stream_full, stream_full) or 1
    n, m = nm or (1, 1)
    edge = math.ceil(R * m / n)
    cycles, gemms, prev = 0, 0, None
    start = end = 0  # buffers=2: the current tile's streaming start and end
    for g in range(G):
        def extents(j: int, tt: int, g: int = g) -> tuple[int, int]:  # (rows, steps) of a fold
            if dataflow == "ws":
                filt = range(g * N + j * C, g * N + min((j + 1) * C, N))
                return packed_length(mask, filt, K, block, nm), P
            if dataflow == "os":
                filt = range(g * N + j * C, g * N + min((j + 1) * C, N))
                return P, packed_length(mask, filt, K, block, nm)
            filt = range(g * N + tt * t_len, g * N + min((tt + 1) * t_len, N))
            return packed_length(mask, filt, K, block, nm), N
        nj = math.ceil({"ws": N, "os": N, "is": P}[dataflow] / C)
        jb = min(mapping.j_block or nj, nj)  # the nest runs on blocks of jb column folds
        trips = {"i": math.ceil(max(K, P) / R) + 1, "j": jb,
                 "t": math.ceil(max(N, P, K, stream_full) / t_len)}
        folds = 0
        for jo, idx in itertools.product(range(math.ceil(nj / jb)),
                                         itertools.product(*(range(trips[x])
                                                             for x in mapping.order))):
            at = dict(zip(mapping.order, idx, strict=True))
            i, j, tt = at["i"], jo * jb + at["j"], at["t"]
            if j >= nj:
                continue
            rows, steps = extents(j, tt)
            if i * R >= rows or tt * t_len >= steps:
                continue
            key = (g, i, j, tt if dataflow == "is" and block else None)
            s = min(t_len, steps - tt * t_len)
            if buffers == 1 or dataflow == "os":
                cycles += (0 if key == prev else fill) + s
            else:
                expanded = math.ceil(min(R, rows - i * R) / n) * m  # d(r)
                if key != prev:
                    load = max(R, expanded) if dataflow == "is" else R
                    start = load if prev is None else max(start + load, end)
                    end = start
                stall = (math.ceil(s * expanded / edge) - s
                         if dataflow == "ws" and expanded > edge else 0)
                end += s + stall
                cycles = end + R + C - 2
            prev, folds = key, folds + 1
        gemms += folds > 0
    return cycles - gemms


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 30), st.integers(1, 48),
       st.integers(1, 20), st.integers(1, 2), st.sampled_from(["block", "hybrid", "nm", "dense"]),
       st.sampled_from([2, 3, 4, 8, 16]), st.sampled_from(["ws", "os", "is"]),
       st.one_of(st.just(SCALESIM), any_mapping), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_compute_cycles_match_an_independent_oracle(R, C, P, K, N, G, scheme, b, dataflow,
                                                    mapping, keep, seed) -> None:
    """B below, above and not dividing R; partial edge blocks; unbalanced and empty folds."""
    rng = np.random.default_rng(seed)
    layer = GemmLayer("x", "conv", P=P, K=K, N=N, groups=G)
    if scheme in ("block", "hybrid"):  # unbalanced bitmaps, some filters' blocks all dropped
        bitmap = rng.random((math.ceil(G * N / b), math.ceil(K / b))) < keep
        mask = np.repeat(np.repeat(bitmap, b, 0), b, 1)[:G * N, :K]
        if scheme == "hybrid":
            mask &= synthetic(layer, "nm", 0.5, rng).mask
        sp = from_mask(layer, mask, scheme, (2, 4) if scheme == "hybrid" else None, b)
    else:
        sp = synthetic(layer, scheme, 0.5, rng)
        mask = np.ones((G * N, K), bool) if sp.mask is None else sp.mask
    hw = hardware(R, C, dataflow, kib=64)
    nm = (2, 4) if scheme in ("nm", "hybrid") else None
    block = b if scheme in ("block", "hybrid") else None
    run = run_layer(layer, hw, sp, mapping)
    assert run.compute_cycles == oracle_compute_cycles(layer, mask, block, nm, R, C, dataflow,
                                                       mapping)
    run = run_layer(layer, with_overrides(hw, weight_buffers=2), sp, mapping)
    stalls = run.edge_stall_cycles if dataflow != "os" else 0  # (OS: the same as one buffer)
    assert run.compute_cycles + stalls == oracle_compute_cycles(
        layer, mask, block, nm, R, C, dataflow, mapping, buffers=2)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(2, 8), st.integers(1, 60), st.integers(1, 60),
       st.integers(1, 24), st.sampled_from(["dense", "unstructured", "nm", "block", "hybrid"]),
       st.sampled_from(["ws", "os", "is"]), st.sampled_from([0.5, 1.0, 2.0]),
       st.integers(0, 2**32 - 1), st.sampled_from([1, 2]))
@example(2, 2, 2, 5, 9, "block", "is", 0.5, 0, 1)  # ties priced beside slower rows of a tiling
def test_traffic_floor_and_best_never_slower(R, C, P, K, N, scheme, dataflow, kib, seed,
                                             buffers) -> None:
    layer = GemmLayer("x", "conv", P=P, K=K, N=N)
    sp = synthetic(layer, scheme, 0.25, np.random.default_rng(seed), block=4)
    hw = hardware(R, C, dataflow, kib=kib, buffers=buffers)
    best = run_layer(layer, hw, sp)
    fixed = run_layer(layer, hw, sp, "scalesim")
    assert best.total_cycles <= fixed.total_cycles
    geo = geometry(layer, hw, sp)
    fewest = math.inf
    for mapping in candidates(geo):
        try:
            _, run = map_layer(layer, hw, sp, mapping)
        except UserError:  # a stationary tile that does not fit: the mapper skips it
            continue
        dram = run.counts[("dram", "read_byte")] + run.counts[("dram", "write_byte")]
        assert dram >= run.compulsory_dram_bytes > 0
        fewest = min(fewest, run.total_cycles)
    assert best.total_cycles == fewest  # walks stopped at the bound never hide the best


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(2, 8), st.integers(1, 40), st.integers(1, 40),
       st.integers(1, 16), st.sampled_from(["dense", "unstructured", "nm", "block", "hybrid"]),
       st.sampled_from(["ws", "os", "is"]), st.sampled_from(["latency", "energy", "edp"]),
       st.integers(0, 2**32 - 1))
def test_the_pick_is_the_first_candidate_of_least_cost(R, C, P, K, N, scheme, dataflow,
                                                       objective, seed) -> None:
    """The reducer against its definition: every candidate planned and priced on its own; the
    least (cycles, energy) for latency, (energy, cycles) for energy, (energy x cycles, cycles)
    for EDP; on a full tie the first candidate."""
    layer = GemmLayer("x", "conv", P=P, K=K, N=N)
    sp = synthetic(layer, scheme, 0.25, np.random.default_rng(seed), block=4)
    hw = hardware(R, C, dataflow, kib=1.0)
    costs = []
    for mapping in candidates(geometry(layer, hw, sp)):
        try:
            _, run = map_layer(layer, hw, sp, mapping)
        except UserError:
            continue
        pj = sum(energy(run.counts, hw.energy, run.total_cycles, hw.array.clock_mhz).values())
        cycles = run.total_cycles
        costs.append(((cycles, pj) if objective == "latency" else
                      (pj, cycles) if objective == "energy" else (pj * cycles, cycles), mapping))
    first = min(range(len(costs)), key=lambda k: costs[k][0])
    assert run_layer(layer, hw, sp, "best", objective).mapping == str(costs[first][1])


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(2, 8), st.integers(1, 40), st.integers(1, 48),
       st.integers(1, 24), st.integers(1, 3),
       st.sampled_from(["dense", "unstructured", "nm", "block", "hybrid"]),
       st.sampled_from(["ws", "os", "is"]), st.sampled_from([0.5, 2.0]),
       st.integers(0, 2**32 - 1), st.sampled_from([1, 2]))
def test_a_bound_stops_only_walks_that_would_exceed_it(R, C, P, K, N, G, scheme, dataflow, kib,
                                                       seed, buffers) -> None:
    """The search stops a walk once a lower bound of its cycles exceeds the bound: walked with
    its own exact cycles as the bound, every candidate runs to the end (same row as unbounded);
    with one cycle less it either runs to the end or stops (its cycles then read bound + 1, no
    folds counted)."""
    layer = GemmLayer("x", "conv", P=P, K=K, N=N, groups=G)
    sp = synthetic(layer, scheme, 0.25, np.random.default_rng(seed), block=4)
    geo = geometry(layer, hardware(R, C, dataflow, kib=kib, buffers=buffers), sp)
    for (t_tile, j_block), _, codes in _by_tile(geo):
        try:
            tiling = stream_tiling(geo, t_tile, j_block=j_block)
        except UserError:
            continue
        for code in codes:
            exact, cycles, first, _ = _cost(geo, tiling, code[None])
            fewest = cycles[first]
            assert np.array_equal(_cost(geo, tiling, code[None], fewest)[0], exact)
            short = _cost(geo, tiling, code[None], fewest - 1)[0][0]
            stopped = short[:6].tolist() == [fewest, 0, 0, 0, 0, 0]
            assert stopped or np.array_equal(short, exact[0])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 30), st.integers(1, 48),
       st.integers(1, 20), st.sampled_from([2, 4, 8]), st.sampled_from(["ws", "os", "is"]),
       st.one_of(st.just(SCALESIM), any_mapping), st.booleans(), st.integers(0, 2**32 - 1),
       st.sampled_from([1, 2]))
def test_shrinking_the_kept_set_never_costs_more(R, C, P, K, N, b, dataflow, mapping, hybrid,
                                                 seed, buffers) -> None:
    rng = np.random.default_rng(seed)
    layer = GemmLayer("x", "conv", P=P, K=K, N=N)
    scheme, nm = ("hybrid", (2, 4)) if hybrid else ("block", None)
    more = rng.random((N, K)) < 0.6
    if hybrid:
        more &= synthetic(layer, "nm", 0.5, rng).mask
    fewer = more & (rng.random((N, K)) < 0.5)
    hw = hardware(R, C, dataflow, buffers=buffers)
    runs = [run_layer(layer, hw, from_mask(layer, m, scheme, nm, b), mapping)
            for m in (more, fewer)]
    assert runs[1].compute_cycles <= runs[0].compute_cycles
    for action in (("dram", "read_byte"), ("dram", "write_byte"), ("ifmap_sram", "read")):
        assert runs[1].counts[action] <= runs[0].counts[action]


def test_a_whole_operand_may_use_the_whole_sram() -> None:
    """16 x 16 int8 weights (256 B) on a 4 x 4 WS array, 8 stream tiles, t outermost: with 256 B
    of filter SRAM they stay resident across the nest (fetched once, though a half holds only
    128 B); with 200 B they are fetched again for every stream tile."""
    layer = GemmLayer("x", "conv", P=64, K=16, N=16)
    mapping = Mapping("tij", 8)

    def filter_fills(kib: float) -> int:
        hw = build_hardware({"array": {"rows": 4, "cols": 4},
                             "memory": {"filter_sram_kib": kib, "ifmap_sram_kib": 64,
                                        "ofmap_sram_kib": 64}})
        return map_layer(layer, hw, DENSE, mapping)[1].counts[("filter_sram", "write")]

    assert filter_fills(0.25) == 256
    assert filter_fills(200 / 1024) == 8 * 256


def test_the_only_stationary_tile_may_fill_the_whole_sram() -> None:
    """One 8 x 8 weight tile (64 B) fits 64 B of filter SRAM when it is the layer's only one;
    two such tiles need a 64 B half each."""
    hw = build_hardware({"array": {"rows": 8, "cols": 8}, "memory": {"filter_sram_kib": 1 / 16}})
    run = run_layer(GemmLayer("one", "conv", P=5, K=8, N=8), hw)
    assert run.counts[("filter_sram", "write")] == 64
    with pytest.raises(UserError, match=r"layer two: filter SRAM half holds 0.03125 KiB"):
        run_layer(GemmLayer("two", "conv", P=5, K=16, N=8), hw)


def test_blocks_of_column_folds_keep_partial_sums_and_refetch_the_ifmap() -> None:
    """4 x 4 WS array, 4 row folds x 8 column folds, 8 steps, row folds outermost: the whole
    layer's 32-bit partial sums (1 KiB) do not fit the 384 B ofmap half, so unblocked they
    spill; in blocks of 2 column folds a block's (256 B) stay, and the ifmap (128 B, which does
    not depend on j) is fetched once per block, 4 times in all."""
    layer = GemmLayer("x", "conv", P=8, K=16, N=32)
    hw = build_hardware({"array": {"rows": 4, "cols": 4},
                         "memory": {"ifmap_sram_kib": 1, "filter_sram_kib": 1,
                                    "ofmap_sram_kib": 0.75}})
    blocked = map_layer(layer, hw, DENSE, Mapping("ijt", None, 2))[1].counts
    assert blocked[("dram", "psum_byte")] == 0
    assert blocked[("ifmap_sram", "write")] == 4 * 8 * 16
    assert blocked[("filter_sram", "write")] == 16 * 32
    assert blocked[("dram", "write_byte")] == 8 * 32
    plain = map_layer(layer, hw, DENSE, Mapping("ijt"))[1].counts
    assert plain[("dram", "psum_byte")] > 0
    assert plain[("ifmap_sram", "write")] == 8 * 16


def test_the_mapper_tries_blocks_of_column_folds() -> None:
    """The setting above with SRAMs too small for the whole ifmap (128 B in 102 B) or weights
    (512 B in 409 B): column folds outermost re-stream the ifmap for each of the 8 (1,024 B), row
    folds outermost spill partial sums, stream tiles outermost re-fetch the weights; blocks of
    3 column folds, the largest whose partial sums fit (3 x 128 B), fetch the ifmap 3 times
    and spill nothing, which the energy objective takes."""
    layer = GemmLayer("x", "conv", P=8, K=16, N=32)
    hw = build_hardware({"array": {"rows": 4, "cols": 4},
                         "memory": {"ifmap_sram_kib": 0.1, "filter_sram_kib": 0.4,
                                    "ofmap_sram_kib": 0.75}})
    assert Mapping("ijt", None, 3) in candidates(geometry(layer, hw))
    run = run_layer(layer, hw, objective="energy")
    assert run.mapping == "J/3>i>j>t T/all"
    assert run.counts[("dram", "read_byte")] + run.counts[("dram", "write_byte")] == (
        3 * 8 * 16 + 16 * 32 + 8 * 32)


def test_partial_sums_spill_at_the_accumulator_width() -> None:
    """4 row folds x 3 column folds; a 512 x 16 output tile of 32-bit psums cannot stay."""
    layer = GemmLayer("x", "conv", P=512, K=64, N=48)
    wide = run_layer(layer, hardware(16, 16, "ws", kib=4), mapping="scalesim").counts
    narrow = run_layer(layer, hardware(16, 16, "ws", kib=4, psum_bits=8),
                       mapping="scalesim").counts
    spills = 3 * 3 * 512 * 16  # written after row folds 1-3, read back before 2-4, per column fold
    assert wide[("dram", "psum_byte")] == 2 * spills * 4
    assert narrow[("dram", "psum_byte")] == 2 * spills
    assert wide[("dram", "write_byte")] == 512 * 48 + spills * 4  # final outputs at 8 bits
    # an SRAM access of a 32-bit partial sum costs four 8-bit word accesses
    assert wide[("ofmap_sram", "psum_read")] == narrow[("ofmap_sram", "psum_read")]
    assert wide[("ofmap_sram", "read")] - narrow[("ofmap_sram", "read")] == \
        3 * wide[("ofmap_sram", "psum_read")]


def test_resident_ifmap_fetches_every_block_some_column_fold_needs_once() -> None:
    """Column fold 0 keeps K 0-31, column fold 1 keeps K 32-63: all 64 inputs are needed."""
    layer = GemmLayer("x", "conv", P=8, K=64, N=16)
    mask = np.zeros((16, 64), bool)
    mask[:8, :32] = mask[8:, 32:] = True
    sp = from_mask(layer, mask, "block", None, 8)
    for mapping in ("scalesim", "best"):
        run = run_layer(layer, hardware(8, 8, "ws", kib=64), sp, mapping)
        assert run.counts[("ifmap_sram", "write")] == 8 * 64  # once each, none twice
        assert run.counts[("ifmap_sram", "read")] == 8 * 64  # each fold streams its 32


def test_the_mapper_removes_ifmap_refetch() -> None:
    """SCALE-Sim's order refetches the ifmap per column fold; the mapper keeps it."""
    layer = GemmLayer("x", "conv", P=4096, K=32, N=128)
    hw = hardware(32, 32, "ws", kib=64, bandwidth=16)
    fixed = run_layer(layer, hw, mapping="scalesim")
    best = run_layer(layer, hw)
    assert fixed.counts[("ifmap_sram", "write")] == 4 * 4096 * 32
    assert best.counts[("ifmap_sram", "write")] == 4096 * 32
    assert best.total_cycles < fixed.total_cycles
    assert best.mapping != str(SCALESIM)


def test_objectives_trade_cycles_for_energy() -> None:
    layer = GemmLayer("x", "conv", P=3136, K=576, N=64, kernel=(3, 3), padding=(1, 1),
                      in_shape=(1, 64, 56, 56), out_shape=(1, 64, 56, 56))
    hw = hardware(32, 32, "ws", kib=64, bandwidth=16)
    runs = {o: simulate([layer], hw, objective=o).totals for o in ("latency", "energy", "edp")}
    assert runs["latency"].total_cycles <= runs["energy"].total_cycles
    assert runs["energy"].energy_total_pj <= runs["latency"].energy_total_pj
    edp = {o: r.energy_total_pj * r.total_cycles for o, r in runs.items()}
    assert edp["edp"] <= min(edp.values())
    assert runs["latency"].mapping != ""


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mapping": "fastest"}, "mapping 'fastest': allowed best, scalesim"),
    ({"objective": "speed"}, "objective 'speed': allowed latency, energy, edp"),
])
def test_unknown_mapping_or_objective(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        simulate([GemmLayer("x", "conv", P=4, K=4, N=4)], hardware(4, 4, "ws"), **kwargs)


def test_bad_mapping_spec() -> None:
    with pytest.raises(UserError, match="permutation of 'ijt'"):
        Mapping("iij")
    with pytest.raises(UserError, match="stream tile 0"):
        Mapping("ijt", 0)


def test_fill_cycles() -> None:
    assert fill_cycles(hardware(8, 4, "ws")) == 2 * 8 + 4 - 2
    assert fill_cycles(hardware(8, 4, "os")) == 8 + 4 - 2


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 120), st.integers(1, 40),
       st.integers(1, 20), st.sampled_from(["dense", "unstructured", "nm", "block", "hybrid"]),
       st.sampled_from(["ws", "os", "is"]), any_mapping, st.sampled_from([0.25, 1.0, 64.0]),
       st.integers(0, 2**32 - 1), st.sampled_from([1, 2]))
def test_walking_alike_folds_once_or_streaming_them_changes_nothing(
        R, C, P, K, N, scheme, dataflow, mapping, bandwidth, seed, buffers) -> None:
    layer = GemmLayer("x", "conv", P=P, K=K, N=N)
    sp = synthetic(layer, scheme, 0.25, np.random.default_rng(seed), block=4)
    hw = hardware(R, C, dataflow, kib=1, bandwidth=bandwidth, buffers=buffers)
    try:
        plans = [plan_folds(layer, hw, sp, mapping, compress=c) for c in (True, False)]
    except UserError:  # a stationary tile that does not fit
        return
    runs = [run_plan(p, hw) for p in plans]
    assert runs[0] == runs[1]
    assert plans[0].folds == plans[1].folds == len(plans[1].stream)
    streamed = run_layer(layer, hw, sp, mapping)  # the search kernel: no plan stored
    assert replace(streamed, compulsory_dram_bytes=0) == runs[1]
    expanded = plans[1]
    assert (runs[1].dram_stall_cycles, runs[1].prefetch_cycles, runs[1].writeback_cycles) == \
        oracle_timeline(expanded.fill + expanded.stream + expanded.edge_stall,
                        expanded.fetch_bytes, expanded.write_bytes, bandwidth)


def oracle_timeline(busy, fetch, write, bandwidth: float) -> tuple[int, int, int]:
    """(DRAM stall, prefetch, write-back) cycles of a fold sequence, from the engine's documented
    timeline: fold 0's operands arrive before anything starts; while fold f is busy, the bus
    carries fold f+1's operands and fold f-1's write-back, and the array waits for whatever is
    left; the last write-back is exposed."""
    n, stalls = len(busy), 0
    for f in range(n):
        traffic = (fetch[f + 1] if f + 1 < n else 0) + (write[f - 1] if f > 0 else 0)
        stalls += max(0, math.ceil(traffic / bandwidth) - int(busy[f]))
    return stalls, math.ceil(fetch[0] / bandwidth), math.ceil(write[-1] / bandwidth)


def test_the_memo_of_unmasked_layers_keys_every_field_but_name_and_weight() -> None:
    """Runs of layers without a mask are remembered by shape: a renamed layer or one with a
    weight reuses the run; a layer that differs in any other field (here only its input shape,
    which sets the ifmap's distinct words) is run afresh."""
    clear_memo()
    hw = hardware(8, 8, "ws")
    layer = GemmLayer("a", "conv", P=64, K=72, N=16, kernel=(3, 3), in_shape=(1, 8, 8, 8),
                      out_shape=(1, 16, 8, 8))
    first = run_layer(layer, hw)
    assert run_layer(replace(layer, name="b", weight=np.ones((16, 72), np.float32)),
                     hw) is first
    strided = replace(layer, in_shape=(1, 8, 16, 16))
    clear_memo()
    fresh = run_layer(strided, hw)
    clear_memo()
    run_layer(layer, hw)
    assert run_layer(strided, hw) == fresh != first
