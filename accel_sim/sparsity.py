"""Per-layer sparsity descriptors: the workload's side of sparsity (the hardware carries support).

A `LayerSparsity` names a scheme and holds the layer's keep-mask (bool ``[groups*N, K]``,
K in the pruner's order) with the pattern parameters the hardware needs to exploit it: N:M and
the block size B. Masks come from a pruned model (`from_weight`, `from_mask`) or are
synthetic (`synthetic`): random scores from a seeded Generator go through the same pattern
functions as the pruner, in their torch-free core (`crisp.pattern_core`, which
`crisp.patterns` builds on), so the simulator never imports torch.

A synthetic network (`synthetic_network`) plans its layers as the pruner does
(`network_plan`: the rule of `crisp.layer_plan`, which `crisp.pruner.plan_layers` applies too)
and spreads one global density over the layers the plan prunes; ``plan="uniform"`` gives every
layer the density instead.

Synthetic density conventions of one layer (``density`` = fraction of its weights kept):

- ``unstructured``: every weight kept independently with probability ``density``.
- ``nm``: the N:M pattern with N/M = density (`nm_for_density`: 0.5 -> 2:4, 0.25 -> 1:4,
  0.125 -> 1:8, 0.0625 -> 1:16).
- ``block``: balanced B x B blocks, ``ceil(density * blocks per row)`` kept per block-row, the
  blocks ranked by uniform random block scores.
- ``hybrid``: N:M inside kept blocks; the N:M pattern gives N/M and the blocks the rest:
  block density = ``min(1, density / (N/M))`` (2:4 at 25 % keeps half the blocks).
- ``channel``: no mask; `prune_channels` shrinks the GEMMs (keep fraction sqrt(density)
  per channel dimension, so that about ``density`` of the weights remain), under either plan:
  its own rule keeps the first layer's inputs and the classifier's outputs whole.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
from numba import njit

from accel_sim.pcg64 import random_f32
from accel_sim.workload import GemmLayer
from crisp import pattern_core as patterns
from crisp.errors import UserError
from crisp.layer_plan import MASK_SCHEMES, LayerPlan, layer_plan

T = TypeVar("T")
SCHEMES = ("dense", "unstructured", "channel", "nm", "block", "hybrid")


@dataclass(frozen=True)
class LayerSparsity:
    """The sparsity of one layer.

    Attributes:
        scheme: one of `SCHEMES`.
        mask: bool ``[groups*N, K]`` keep-mask (True = non-zero weight), or None = all kept.
        nm: the layer's N:M pattern ``(N, M)`` (schemes nm, hybrid), else None.
        block: the block size B (schemes block, hybrid), else None.
    """

    scheme: str = "dense"
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    nm: tuple[int, int] | None = None
    block: int | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise UserError(f"sparsity scheme {self.scheme!r}: allowed {', '.join(SCHEMES)}")
        if self.scheme in ("nm", "hybrid") and self.nm is None:
            raise UserError(f"scheme {self.scheme!r} needs an N:M pattern (e.g. nm=(2, 4))")
        if self.scheme in ("block", "hybrid") and self.block is None:
            raise UserError(f"scheme {self.scheme!r} needs a block size (e.g. block=32)")
        if self.nm is not None:
            patterns.check_nm(*self.nm)
        if self.block is not None:
            patterns.check_block(self.block)
        if self.mask is not None and (self.mask.ndim != 2 or self.mask.dtype != np.bool_):
            raise UserError(
                f"mask must be a 2-D bool array, got {self.mask.dtype} {self.mask.shape}"
            )

    def check(self, layer: GemmLayer) -> None:
        """Raise UserError unless the mask is ``[groups*N, K]`` of ``layer``."""
        want = (layer.groups * layer.N, layer.K)
        if self.mask is not None and self.mask.shape != want:
            raise UserError(
                f"layer {layer.name}: mask shape {self.mask.shape} is not (groups*N, K) = {want}"
            )

    def nonzeros(self, layer: GemmLayer) -> int:
        """Kept (non-zero) weights of ``layer``."""
        return layer.groups * layer.N * layer.K if self.mask is None else self._mask_nonzeros

    @functools.cached_property
    def _mask_nonzeros(self) -> int:
        return int(np.count_nonzero(self.mask))

    def __getstate__(self) -> dict:
        """What a copy sent to another process carries: the fields (the mask packed 8 weights
        to a byte: a VGG-16 mask set travels as 17 MB, not 138), the cached properties and the
        summary statistics (`summarize`), not the per-array data derived from the mask
        (packings, extents, cell and running counts), which a process derives for the arrays
        it runs.

        Both dicts are copied before pickling iterates them (a copy of a dict is one step that
        no other thread interleaves): a Dask worker may send a descriptor to another worker
        while its own task thread adds to them.
        """
        state = dict(self.__dict__)
        derived = dict(state.get("_derived", {}))
        state["_derived"] = {key: value for key, value in derived.items()
                             if key[0] in _SUMMARY}
        if self.mask is not None:
            state["mask"] = (np.packbits(self.mask, axis=1), self.mask.shape[1])
        return state

    def __setstate__(self, state: dict) -> None:
        """A copy from `__getstate__`'s state: the mask unpacked to bools."""
        if state["mask"] is not None:
            packed, k = state["mask"]
            state["mask"] = np.unpackbits(packed, axis=1, count=k).view(np.bool_)
        self.__dict__.update(state)

    def derived(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, remembered on this descriptor under ``key``.

        For data derived from the mask (which never changes once drawn) that a sweep would
        otherwise recompute per design point: statistics here, the hardware's packing in
        `accel_sim.packing.pack`. ``key`` is a tuple whose first item names the kind of
        data (only the summary kinds travel with a copy: `__getstate__`). The result is
        shared: callers must not modify it.
        """
        cache = self.__dict__.setdefault("_derived", {})
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def summarize(self, layer: GemmLayer) -> LayerSparsity:
        """Compute now the mask's statistics that every simulation of it asks for, whatever the
        array: non-zeros, inputs and filters holding a non-zero, its own N:M pattern's densest
        group, kept blocks above each block row. They are remembered on the descriptor and
        travel with it: a sweep summarizes where it draws the masks, so the worker processes
        that receive copies do not each recompute them. Returns this descriptor."""
        if self.mask is not None:
            self.nonzeros(layer)
            self.io_counts(layer.groups)
            if self.nm is not None:
                self.satisfies_nm(*self.nm)
            if self.block is not None:
                _ = self.block_rows_before
        return self

    def satisfies_nm(self, n: int, m: int) -> bool:
        """True if every aligned group of ``m`` along K keeps at most ``n`` (no mask: False).

        Computed once per mask and M, as sweeps ask per design point.
        """
        if self.mask is None:
            return False
        return self.derived(("group max", m), lambda: _group_max(self.mask, m)) <= n

    def io_counts(self, groups: int) -> tuple[int, int]:
        """(input indices, filters) of the ``groups`` GEMMs that hold a non-zero: the K indices
        some filter of the group keeps and the filters that keep some weight. Cached."""
        def count() -> tuple[int, int]:
            per_group = self.mask.reshape(groups, -1, self.mask.shape[1])
            return tuple(int(v) for v in _io_counts(per_group))

        return self.derived(("io counts", groups), count)

    def tile_nonzeros(self, groups: int, rows: int, cols: int) -> np.ndarray:
        """Non-zeros per WS weight tile (``rows`` of K by ``cols`` of N) of each group.

        Returns:
            int64 ``[groups, ceil(N/cols), ceil(K/rows)]``, from counts cached on the descriptor,
            so a sweep over arrays and stream tiles reads the mask once. One side a multiple of
            8 and the other not (a stream tile: IS's filters, OS's K): differences, at the tile
            edges, of running counts of 1 x 8 cells along N (or 8 x 1 along K); otherwise sums
            of ``gcd(cols, 8) x gcd(rows, 8)`` cell counts (uint8; the mask itself for 1 x 1).
        """
        per_group = self.mask.reshape(groups, -1, self.mask.shape[1])
        if rows % 8 == 0 and cols % 8:
            running = self.derived(("running counts", groups, "N"),
                                   lambda: _running(per_group, 1))
            return _row_edges(running, cols, rows // 8)
        if cols % 8 == 0 and rows % 8:
            running = self.derived(("running counts", groups, "K"),
                                   lambda: _running(per_group, 2))
            return _column_edges(running, rows, cols // 8)
        cell_n, cell_k = math.gcd(cols, 8), math.gcd(rows, 8)
        cells = per_group
        if cell_n * cell_k > 1:
            cells = self.derived(("cell counts", groups, cell_n, cell_k),
                                 lambda: _sum_tiles(per_group, cell_n, cell_k, np.uint8))
        return _sum_tiles(cells, cols // cell_n, rows // cell_k, np.int64)

    @functools.cached_property
    def block_rows_before(self) -> np.ndarray:
        """int64 ``[block rows + 1, block columns]``: kept blocks in the block rows above each
        (a cumulative count over `block_bitmap`, row 0 all zero)."""
        bitmap = self.block_bitmap
        before = np.zeros((bitmap.shape[0] + 1, bitmap.shape[1]), np.int64)
        np.cumsum(bitmap, axis=0, out=before[1:])
        return before

    @functools.cached_property
    def block_bitmap(self) -> np.ndarray:
        """bool ``[ceil(rows/B), ceil(K/B)]``: True where a B x B block holds a non-zero.

        Blocks tile the whole ``[groups*N, K]`` mask, as the pruner tiles ``[C_out, K]``.

        Raises:
            UserError: the descriptor has no mask or no block size.
        """
        if self.mask is None or self.block is None:
            raise UserError(f"scheme {self.scheme!r} has no block mask")
        return _block_any(self.mask, self.block)


DENSE = LayerSparsity()
_SUMMARY = ("group max", "io counts")  # the kinds of derived data that travel with a copy


def _sum_tiles(counts: np.ndarray, tile_n: int, tile_k: int, dtype: type) -> np.ndarray:
    """Sum ``[groups, N, K]`` counts over ``tile_n x tile_k`` tiles (edge tiles partial), in
    ``dtype``: first over each tile's rows (whole rows at a time), then along K."""
    g, n, k = counts.shape
    rows = np.zeros((g, -(-n // tile_n), k), dtype)
    _add_rows(counts, tile_n, rows)
    if tile_k == 1:
        return rows
    out = np.zeros((g, rows.shape[1], -(-k // tile_k)), dtype)
    _add_columns(rows, tile_k, out)
    return out


def _running(mask: np.ndarray, axis: int) -> np.ndarray:
    """Running non-zero counts of a ``[groups, N, K]`` mask along ``axis`` (1: N, 2: K), in
    cells 8 wide across it: ``[groups, N + 1, ceil(K/8)]`` or ``[groups, ceil(N/8), K + 1]``,
    index 0 all zero; uint16 or int32, the narrower the largest count fits (VGG-16's
    unstructured masks: about 0.7 bytes per weight for both directions, the mask itself 1)."""
    g, n, k = mask.shape
    shape = (g, n + 1, -(-k // 8)) if axis == 1 else (g, -(-n // 8), k + 1)
    most = 8 * (n if axis == 1 else k)
    dtype = next(t for t in (np.uint16, np.int32, np.int64) if most <= np.iinfo(t).max)
    out = np.zeros(shape, dtype)
    (_run_rows if axis == 1 else _run_columns)(mask, out)
    return out


@njit(cache=True)
def _run_rows(mask, out):  # pragma: no cover - compiled
    """``out[a, r + 1, c]``: non-zeros of group a's rows before r + 1 in K indices 8c..8c+7."""
    g, n, k = mask.shape
    for a in range(g):
        for r in range(n):
            out[a, r + 1] = out[a, r]
            for c in range(k):
                out[a, r + 1, c >> 3] += mask[a, r, c]


@njit(cache=True)
def _run_columns(mask, out):  # pragma: no cover - compiled
    """``out[a, q, c + 1]``: non-zeros of group a's rows 8q..8q+7 in K indices before c + 1."""
    g, n, k = mask.shape
    for a in range(g):
        for q in range(out.shape[1]):
            for r in range(8 * q, min(n, 8 * q + 8)):
                for c in range(k):
                    out[a, q, c + 1] += mask[a, r, c]
            for c in range(k):
                out[a, q, c + 1] += out[a, q, c]


@njit(cache=True)
def _row_edges(running, tile_n, cells_k):  # pragma: no cover - compiled
    """Tile sums from running counts along N (`_running`, axis 1): tiles of ``tile_n``
    filters by ``cells_k`` cells of 8 K indices."""
    g, n, kc = running.shape[0], running.shape[1] - 1, running.shape[2]
    out = np.zeros((g, -(-n // tile_n), -(-kc // cells_k)), np.int64)
    for a in range(g):
        for q in range(out.shape[1]):
            lo, hi = q * tile_n, min(n, (q + 1) * tile_n)
            for c in range(kc):
                out[a, q, c // cells_k] += np.int64(running[a, hi, c]) - running[a, lo, c]
    return out


@njit(cache=True)
def _column_edges(running, tile_k, cells_n):  # pragma: no cover - compiled
    """Tile sums from running counts along K (`_running`, axis 2): tiles of ``cells_n``
    cells of 8 filters by ``tile_k`` K indices."""
    g, nc, k = running.shape[0], running.shape[1], running.shape[2] - 1
    out = np.zeros((g, -(-nc // cells_n), -(-k // tile_k)), np.int64)
    for a in range(g):
        for q in range(nc):
            for t in range(out.shape[2]):
                lo, hi = t * tile_k, min(k, (t + 1) * tile_k)
                out[a, q // cells_n, t] += np.int64(running[a, q, hi]) - running[a, q, lo]
    return out


@njit(cache=True)
def _add_rows(counts, tile_n, out):  # pragma: no cover - compiled
    g, n, k = counts.shape
    for a in range(g):
        for r in range(n):
            q = r // tile_n
            for c in range(k):
                out[a, q, c] += counts[a, r, c]


@njit(cache=True)
def _add_columns(counts, tile_k, out):  # pragma: no cover - compiled
    g, n, k = counts.shape
    for a in range(g):
        for r in range(n):
            for t in range(out.shape[2]):
                total = 0
                for c in range(t * tile_k, min(k, (t + 1) * tile_k)):
                    total += counts[a, r, c]
                out[a, r, t] += total


def _group_max(mask: np.ndarray, m: int) -> int:
    """The most non-zeros any aligned group of ``m`` (2, 4, 8 or 16) along K holds, a short
    tail group too. A full group is read as unsigned words of its bool bytes (each 0 or 1), so
    multiplying a word by 0x0101...01 sums its bytes into the top byte."""
    k = mask.shape[1]
    full = k - k % m
    best = int(mask[:, full:].sum(axis=1).max(initial=0))
    if full:
        size = min(m, 8)  # bytes per word; a group of 16 is two words
        words = mask[:, :full].view(np.dtype(f"u{size}"))
        word = words.dtype.type
        ones = int("01" * size, 16)
        best = max(best, int(_word_group_max(words, m // size, word(ones), word(255 * ones),
                                             word(8 * (size - 1)), m)))
    return best


@njit(cache=True)
def _word_group_max(words, per_group, ones, every, shift, m):  # pragma: no cover - compiled
    """The largest byte sum of ``per_group`` consecutive words along each row (``ones``,
    ``every`` and ``shift`` in the words' type: 0x01 and 0xff in every byte, the top byte's
    offset in bits); stops once a group holds ``m`` (no group can hold more)."""
    best = 0
    rows, n = words.shape
    for r in range(rows):
        for start in range(0, n, per_group):
            total = 0
            for q in range(start, start + per_group):
                total += np.int64((words[r, q] * ones & every) >> shift)
            best = max(best, total)
        if best >= m:
            return best
    return best


@njit(cache=True)
def _block_any(mask, b):  # pragma: no cover - compiled
    """bool ``[ceil(rows/b), ceil(K/b)]``: blocks of ``mask`` holding a True (edge blocks
    partial); each block-row's rows are OR-ed whole first, then split into blocks."""
    rows, k = mask.shape
    out = np.zeros((-(-rows // b), -(-k // b)), np.bool_)
    kept = np.empty(k, np.bool_)
    for q in range(out.shape[0]):
        kept[:] = False
        for r in range(q * b, min(rows, (q + 1) * b)):
            for c in range(k):
                kept[c] |= mask[r, c]
        for t in range(out.shape[1]):
            for c in range(t * b, min(k, (t + 1) * b)):
                if kept[c]:
                    out[q, t] = True
                    break
    return out


@njit(cache=True)
def _io_counts(mask):  # pragma: no cover - compiled
    """(K indices with a non-zero in some filter, filters with a non-zero), over groups."""
    g, n, k = mask.shape
    inputs = 0
    outputs = 0
    for a in range(g):
        used = np.zeros(k, np.bool_)
        for r in range(n):
            any_kept = False
            for c in range(k):
                used[c] |= mask[a, r, c]
                any_kept |= mask[a, r, c]
            outputs += any_kept
        inputs += used.sum()
    return inputs, outputs


def from_mask(
    layer: GemmLayer,
    mask: np.ndarray,
    scheme: str,
    nm: tuple[int, int] | None = None,
    block: int | None = None,
) -> LayerSparsity:
    """A descriptor from a real keep-mask (bool ``[groups*N, K]``), e.g. the pruner's.

    Raises:
        UserError: bad scheme, pattern or mask shape.
    """
    spec = LayerSparsity(scheme, np.ascontiguousarray(mask, dtype=bool), nm, block)
    spec.check(layer)
    return spec


def from_weight(
    layer: GemmLayer,
    scheme: str,
    n: int | None = None,
    m: int | None = None,
    block: int | None = None,
) -> LayerSparsity:
    """A descriptor from the layer's own weights: the mask is ``weight != 0``.

    Raises:
        UserError: the layer carries no weights (a topology file), or bad parameters.
    """
    if layer.weight is None:
        raise UserError(f"layer {layer.name} has no weights to read a mask from")
    nm = (n, m) if n is not None and m is not None else None
    return from_mask(layer, layer.weight != 0, scheme, nm, block)


def weight_sparsity(layers: Sequence[GemmLayer], nm: tuple[int, int] | None = (2, 4),
                    block: int = patterns.DEFAULT_BLOCK) -> dict[str, LayerSparsity]:
    """Each layer's descriptor from its weights' zeros, by layer name (the zeros-as-mask rule of
    `accel_sim.onnx_lowering`: dense, hybrid, nm, block or unstructured at ``nm`` and ``block``).

    Args:
        nm: the run's N:M pattern, or None (no N:M patterns are tried).
        block: the run's block size B.

    Raises:
        UserError: a bad pattern or block size.
    """
    return {layer.name: layer_pattern(layer, nm, block) for layer in layers}


def layer_pattern(layer: GemmLayer, nm: tuple[int, int] | None = (2, 4),
                  block: int = patterns.DEFAULT_BLOCK) -> LayerSparsity:
    """One layer's descriptor from its weight's zeros (see `weight_sparsity`)."""
    if layer.weight is None:
        return DENSE
    mask = layer.weight != 0
    if mask.all():
        return DENSE
    blocks = from_mask(layer, mask, "block", block=block)
    bitmap = blocks.block_bitmap
    zero_block = not bool(bitmap.all())
    if nm is not None and from_mask(layer, mask, "nm", nm).satisfies_nm(*nm):
        return (from_mask(layer, mask, "hybrid", nm, block) if zero_block
                else from_mask(layer, mask, "nm", nm))
    if zero_block and np.array_equal(mask, patterns.expand_blocks(bitmap, block, mask.shape)):
        return blocks
    return from_mask(layer, mask, "unstructured")


def nm_for_density(density: float) -> tuple[int, int]:
    """The N:M pattern keeping ``density``: N/4 for multiples of 1/4, else 1:M with M = 1/density.

    Raises:
        UserError: no N:M pattern with M in 2..16 has this density.
    """
    for n, m in ((1, 2), (2, 4), (1, 4), (3, 4), (1, 8), (1, 16)):
        if math.isclose(density, n / m):
            return (2, 4) if (n, m) == (1, 2) else (n, m)
    raise UserError(f"density {density} has no N:M pattern: allowed 0.75, 0.5, 0.25, 0.125, 0.0625")


def _check_density(density: float) -> None:
    if not 0 < density <= 1:
        raise UserError(f"density {density} must be in (0, 1]")


def synthetic(
    layer: GemmLayer,
    scheme: str,
    density: float,
    rng: np.random.Generator,
    nm: tuple[int, int] = (2, 4),
    block: int = patterns.DEFAULT_BLOCK,
) -> LayerSparsity:
    """A synthetic mask at ``density`` from uniform random scores (see module docstring).

    Args:
        layer: the layer whose ``[groups*N, K]`` weight shape the mask takes.
        scheme: one of `SCHEMES`; ``dense`` and ``channel`` give no mask, nor does any scheme
            on a ``matmul`` layer (two activations: nothing to prune).
        density: fraction of weights kept, in (0, 1].
        rng: the only source of randomness.
        nm: the N:M pattern of ``hybrid`` (``nm`` takes its pattern from the density).
        block: block size B of ``block`` and ``hybrid`` (default
            `crisp.pattern_core.DEFAULT_BLOCK`, 16, which says why).

    Raises:
        UserError: unknown scheme, density out of (0, 1], bad pattern.
    """
    _check_density(density)
    if scheme not in SCHEMES:
        raise UserError(f"sparsity scheme {scheme!r}: allowed {', '.join(SCHEMES)}")
    if scheme in ("dense", "channel"):
        return LayerSparsity(scheme)
    if layer.kind == "matmul":  # two activations: no weights to prune
        return LayerSparsity("dense")
    shape = (layer.groups * layer.N, layer.K)
    if scheme == "unstructured":
        return from_mask(layer, _by_rows(shape, rng, lambda s: s < density), scheme)
    if scheme == "nm":
        return synthetic_nm(layer, *nm_for_density(density), rng)
    # Block scores straight from the Generator: the same ranking as summed uniform weight scores
    # would give in distribution, without a float array of the whole layer.
    blocks = rng.random((-(-shape[0] // block), -(-shape[1] // block)))
    block_density = density if scheme == "block" else min(1.0, density * nm[1] / nm[0])
    keep = patterns.blocks_per_row(shape[1], block, block_density)
    mask = patterns.expand_blocks(patterns.top_k_rows(blocks, keep), block, shape)
    if scheme == "block":
        return from_mask(layer, mask, scheme, None, block)
    mask &= _by_rows(shape, rng, lambda s: patterns.nm_keep(s, *nm))
    return from_mask(layer, mask, scheme, nm, block)


def synthetic_nm(layer: GemmLayer, n: int, m: int, rng: np.random.Generator) -> LayerSparsity:
    """A synthetic N:M mask: the top N of M uniform random scores in every group along K.

    The ``nm`` scheme of `synthetic` and the N:M column of a SCALE-Sim topology
    (`topology_sparsity`) both draw their masks here.

    Raises:
        UserError: a pattern `crisp.pattern_core.check_nm` rejects.
    """
    patterns.check_nm(n, m)
    mask = _by_rows((layer.groups * layer.N, layer.K), rng, lambda s: patterns.nm_keep(s, n, m))
    return from_mask(layer, mask, "nm", (n, m))


_CHUNK_SCORES = 1 << 18  # scores drawn at a time: 1 MiB of float32, which stays in the cache
# while the pattern reads it (chunks of 256 rows, 25 MB on VGG-16's fc1, drew masks 9 % slower)


def _by_rows(
    shape: tuple[int, int], rng: np.random.Generator, pattern: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """A bool mask of ``shape`` built chunk by chunk of rows from uniform float32 scores
    (``rng.random(dtype=np.float32)``'s, drawn by `accel_sim.pcg64.random_f32`)."""
    mask = np.empty(shape, bool)
    rows = max(1, _CHUNK_SCORES // max(1, shape[1]))
    scores = np.empty(min(rows, shape[0]) * shape[1], np.float32)  # reused: patterns copy
    for lo in range(0, shape[0], rows):
        hi = min(shape[0], lo + rows)
        chunk = scores[:(hi - lo) * shape[1]]
        mask[lo:hi] = pattern(random_f32(rng, chunk).reshape(hi - lo, shape[1]))
    return mask


def topology_sparsity(
    layers: list[GemmLayer], nm: dict[str, tuple[int, int]], seed: int
) -> dict[str, LayerSparsity]:
    """Descriptors for a SCALE-Sim topology's per-layer N:M column.

    A topology carries shapes, not weights, so a layer with an N:M entry gets a synthetic N:M mask
    (`synthetic_nm`) drawn from ``numpy.random.default_rng(seed)``, layer by layer in file
    order; a layer without one (or ``1:1``) is dense.

    Args:
        layers: the topology's layers.
        nm: ``(N, M)`` by layer name, only for the sparse layers.
        seed: the run's ``--seed``.
    """
    rng = np.random.default_rng(seed)
    return {la.name: synthetic_nm(la, *nm[la.name], rng) if la.name in nm else DENSE
            for la in layers}


PLANS = {
    "pruner": "the pruner's layer plan (first conv and depthwise convs dense, classifier N:M for "
              "hybrid and nm, dense for block), one global density",
    "uniform": "every layer at the same density, the first conv and the classifier included",
}
"""The layer plans of synthetic networks (`synthetic_network`), each with the line that says
what it does (for results and headers)."""
_BUDGETED = ("unstructured", "block", "hybrid")  # the patterns that share the global density
_LEAST = 1e-6  # the pattern layers' density when the fixed layers spend the whole budget: one
# block per block-row (block, hybrid), almost no weight (unstructured), as the pruner keeps


def check_plan(plan: str) -> str:
    """``plan`` if it is one of `PLANS`.

    Raises:
        UserError: an unknown plan.
    """
    if plan not in PLANS:
        raise UserError(f"layer plan {plan!r}: allowed {', '.join(PLANS)}")
    return plan


ACTIVATION_PLAN = LayerPlan("dense", "matmul of two activations: no weights to prune")
"""The plan of a ``matmul`` layer under every scheme (the pruner never sees one: no module)."""


def network_plan(
    layers: list[GemmLayer], scheme: str, exclude_first: bool = True,
    head_pattern: str | None = None,
) -> dict[str, LayerPlan]:
    """The pruner's plan (`crisp.layer_plan.layer_plan`) of every layer, by name.

    Mirrors `crisp.pruner.plan_layers` on GEMM layers in execution order: the first conv is the
    first layer of kind ``conv`` or ``depthwise`` (the pruner's first Conv2d in module order),
    the classifier the last ``linear`` layer (`crisp.masks.classifier_name`: the last Linear;
    none in a network without one), a depthwise conv a layer of kind ``depthwise``. For the zoo
    models execution order is module order, so both plans agree layer by layer.

    Args:
        scheme: one of `crisp.layer_plan.MASK_SCHEMES`.
        exclude_first: leave the first conv dense (as `crisp.config.PruneConfig`'s default).
        head_pattern: the classifier's pattern; None = the scheme's default (as
            `crisp.config.PruneConfig`'s).

    Raises:
        UserError: a scheme without per-layer masks, an unknown head pattern.
    """
    first = next((la.name for la in layers if la.kind in ("conv", "depthwise")), None)
    head = next((la.name for la in reversed(layers) if la.kind == "linear"), None)
    return {la.name: ACTIVATION_PLAN if la.kind == "matmul" else
            layer_plan(scheme, first_conv=la.name == first, classifier=la.name == head,
                       depthwise=la.kind == "depthwise", exclude_first=exclude_first,
                       head_pattern=head_pattern)
            for la in layers}


def _weights(layer: GemmLayer) -> int:
    """The layer's weights, ``K * N * groups`` (none for a ``matmul`` of two activations)."""
    return 0 if layer.kind == "matmul" else layer.K * layer.N * layer.groups


def _expected_kept(layer: GemmLayer, pattern: str, share: float, nm: tuple[int, int],
                   nm_only: tuple[int, int], block: int) -> float:
    """Weights ``layer`` keeps on average under its planned ``pattern`` at layer density
    ``share``: whole blocks per block-row for the block patterns (`synthetic`), each of the
    mean width K / ceil(K/B), as the block ranking is uniform random."""
    weights = _weights(layer)
    if pattern in ("dense", "nm"):
        return weights * (nm_only[0] / nm_only[1] if pattern == "nm" else 1.0)
    if pattern == "unstructured":
        return weights * share
    ratio = nm[0] / nm[1] if pattern == "hybrid" else 1.0
    keep = patterns.blocks_per_row(layer.K, block, min(1.0, share / ratio))
    return weights * ratio * keep / -(-layer.K // block)


def _plan_share(layers: list[GemmLayer], planned: dict[str, str], density: float,
                nm: tuple[int, int], nm_only: tuple[int, int], block: int) -> tuple[float, bool]:
    """The one layer density of the unstructured, block and hybrid layers of ``planned``
    (pattern by layer name) at which the network keeps closest to ``density`` of its weights
    (`_expected_kept`, bisected), and whether that is ``density`` within rounding (False: the
    fixed layers alone keep more, or the pruned layers cannot keep enough)."""
    target = density * sum(map(_weights, layers))

    def kept(share: float) -> float:
        return sum(_expected_kept(la, planned[la.name], share, nm, nm_only, block)
                   for la in layers)

    if not any(planned[la.name] in _BUDGETED for la in layers):
        return density, True
    if kept(_LEAST) > target:
        return _LEAST, False
    if kept(1.0) < target:
        return 1.0, False
    low, high = _LEAST, 1.0  # kept(low) <= target < kept(high)
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if kept(mid) <= target else (low, mid)
    return min((low, high), key=lambda share: abs(kept(share) - target)), True


def synthetic_network(
    layers: list[GemmLayer],
    scheme: str,
    density: float,
    seed: int,
    nm: tuple[int, int] = (2, 4),
    block: int = patterns.DEFAULT_BLOCK,
    plan: str = "pruner",
) -> tuple[list[GemmLayer], dict[str, LayerSparsity]]:
    """Layers and per-layer descriptors of a whole network at one global density (one seed).

    ``plan="pruner"`` (the default) plans the layers as ``crisp prune`` does with
    `crisp.config.PruneConfig`'s defaults (`network_plan`): the first conv and the depthwise
    convs dense, the classifier N:M (hybrid: the ``nm`` pattern; nm: its own), dense (block) or
    unstructured, every other layer the scheme. The unstructured, block and hybrid layers share
    one layer density, chosen so that the network keeps ``density`` of its weights (K*N*groups
    per layer) within rounding: the block schemes keep whole blocks per block-row, counted at
    their mean width. Where the fixed layers alone keep more (a large N:M or dense classifier
    at a low density), the pruned layers keep their least (one block per block-row) and one
    warning line on stderr says what the network keeps. ``nm`` keeps N/M on its pattern layers
    (so a little more than ``density`` overall). ``plan="uniform"`` gives every layer
    ``density`` (`synthetic`).

    ``channel`` returns the shrunk layers of `prune_channels` under either plan (its own rule
    keeps the first layer's inputs and the classifier's outputs whole); other schemes keep the
    layers and draw the masks layer by layer from ``numpy.random.default_rng(seed)`` (a dense
    layer of the plan draws nothing).

    Args:
        density: fraction of the network's weights kept, in (0, 1].
        nm: the N:M pattern of ``hybrid`` and of its classifier.
        block: block size B of ``block`` and ``hybrid``.
        plan: one of `PLANS`.

    Raises:
        UserError: unknown scheme or plan, density out of (0, 1], bad pattern.
    """
    _check_density(density)
    check_plan(plan)
    if scheme == "channel":
        shrunk = prune_channels(layers, density)
        return shrunk, {layer.name: LayerSparsity("channel") for layer in shrunk}
    rng = np.random.default_rng(seed)
    if plan == "uniform" or scheme not in MASK_SCHEMES:
        return layers, {la.name: synthetic(la, scheme, density, rng, nm, block) for la in layers}
    planned = {name: p.pattern for name, p in network_plan(layers, scheme).items()}
    nm_only = nm_for_density(density) if scheme == "nm" else nm  # the N:M-only layers' pattern
    share, reached = _plan_share(layers, planned, density, nm, nm_only, block)
    descriptors = {la.name: synthetic_nm(la, *nm_only, rng) if planned[la.name] == "nm"
                   else synthetic(la, planned[la.name], share, rng, nm, block) for la in layers}
    if not reached:
        print(f"warning: {scheme} at density {density:g} is out of reach of the pruner's layer "
              "plan, whose dense and N:M layers are fixed: the network keeps "
              f"{kept_fraction(layers, layers, descriptors):.4f}", file=sys.stderr)
    return layers, descriptors


def kept_fraction(original: Sequence[GemmLayer], layers: Sequence[GemmLayer],
                  descriptors: Mapping[str, LayerSparsity]) -> float:
    """Fraction of ``original``'s weights (K*N*groups per layer) that a synthetic network keeps:
    ``layers`` and ``descriptors`` as `synthetic_network` returns them (channel pruning's shrunk
    layers, else ``original`` itself)."""
    kept = sum(descriptors[layer.name].nonzeros(layer) for layer in layers
               if layer.kind != "matmul")
    return kept / sum(map(_weights, original))


def _kept(count: int, fraction: float) -> int:
    return max(1, math.ceil(round(fraction * count, 9)))


def _taps(layer: GemmLayer) -> int:
    """Kernel taps per input channel: ``kh * kw`` (1 for linear layers)."""
    return layer.kernel[0] * layer.kernel[1]


def _with_channels(shape: tuple[int, ...], channels: int) -> tuple[int, ...]:
    """``shape`` (batch first) with its channel (conv) or feature (linear) dimension replaced."""
    if len(shape) == 4:
        return (shape[0], channels, *shape[2:])
    return (*shape[:-1], channels) if shape else shape


def prune_channels(layers: list[GemmLayer], density: float) -> list[GemmLayer]:
    """Uniform channel pruning: smaller dense GEMMs with about ``density`` of the weights.

    Every layer keeps ``ceil(sqrt(density) * C)`` of its output channels (all of them for the
    last layer, the classifier) and the same fraction of its input channels (all of them for the
    first layer, the image). Applied uniformly, producer and consumer agree on every tensor,
    residual adds included. A depthwise layer keeps as many groups as it keeps input channels.
    A linear layer fed by flattened conv features keeps whole channels when its K is a multiple
    of the previous layer's channels, else ``ceil(f * K)`` inputs. Masks and weights are dropped.
    A ``matmul`` of two activations (attention's ``Q K^T``, ``softmax(.) V``) keeps its shape:
    which of its dimensions are channels (a head's width) and which tokens is not recorded, so
    this synthetic rule does not shrink it (conservative: a real channel-pruned ViT's attention
    GEMMs shrink with its head width).

    Raises:
        UserError: density out of (0, 1].
    """
    _check_density(density)
    f = math.sqrt(density)
    out: list[GemmLayer] = []
    prev_channels = 0  # the previous layer's output channels before pruning
    for i, layer in enumerate(layers):
        if layer.kind == "matmul":  # two activations: kept whole (see the docstring)
            out.append(layer)
            continue
        k, n, groups = layer.K, layer.N, layer.groups
        if layer.kind == "depthwise":
            groups = _kept(groups, f if i > 0 else 1.0)
        elif i > 0:
            taps = _taps(layer)
            if layer.kind == "linear":
                flat = prev_channels > 0 and k % prev_channels == 0
                taps = k // prev_channels if flat else 1
            channels = k // taps
            k = max(1, _kept(channels * groups, f) // groups) * taps
        if layer.kind != "depthwise" and i < len(layers) - 1:
            n = max(1, _kept(n * groups, f) // groups)
        prev_channels = layer.N * layer.groups
        out.append(replace(layer, K=k, N=n, groups=groups, weight=None,
                           in_shape=_with_channels(layer.in_shape, k * groups // _taps(layer)),
                           out_shape=_with_channels(layer.out_shape, n * groups)))
    return out
