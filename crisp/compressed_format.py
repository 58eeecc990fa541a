"""The compressed model format: a ``.safetensors`` file with a JSON header in its metadata.

**Header** (metadata key ``crisp``, a JSON string): ``format`` (``crisp-compressed``),
``version`` (`VERSION`), ``dtype`` of the stored values, ``k_order``, free-form ``meta``
(model name, classes, ...) and one entry per Conv2d/Linear layer, in execution order:
``name``, ``scheme`` (``hybrid``, ``nm``, ``block``, ``unstructured`` or ``dense``), ``shape`` (the
weight's own shape), ``rows`` (C_out) and ``K``, ``n``, ``m``, ``b``, ``counts`` (of ``values``,
``offsets`` and ``bitmap_bits``, those of the scheme's tensors), for ``hybrid`` and ``block``
``blocks_per_row`` (the blocks every block-row keeps, or ``null`` when block-rows differ: a
pruner's balanced layer has a number), and the layer's GEMM geometry as
``accel_sim.workload.GemmLayer`` fields (``kind, P, K, N, groups, kernel, stride, padding,
in_shape, out_shape``; ``null`` for a layer the traced forward pass never ran) for the input
shape in ``meta["input_shape"]`` (batch 1), so a simulator can rebuild the workload from the file
alone. Then ``dense_gemms``: the network's GEMMs that have no layer entry, each ``name``,
``index`` (its position among all the network's GEMMs in execution order) and ``geometry`` (as
above): matmuls of two activations (attention's ``Q K^T`` and ``softmax(.) V``), weights used
outside a Conv2d/Linear module (``nn.MultiheadAttention``'s ``in_proj_weight``, which the pruner
does not mask) and second calls of a module (``name#1``); they hold no tensor and are simulated
dense. Last, ``checksum``: ``sha256:`` and 64 hex digits (`checksum_of`).

**Checksum**: SHA-256 over (1) the header without ``checksum``, as JSON with sorted keys and no
spaces (``json.dumps(h, sort_keys=True, separators=(",", ":"))``, ASCII), then (2) for every
tensor of the file, ``state.*`` included, in sorted name order, the compact JSON
``[name, dtype, shape, byte count]`` (safetensors' dtype name, e.g.
``["3.values","F16",[2560],5120]``) followed by the tensor's raw bytes. So a flipped bit anywhere
in the tensors, a reordered, renamed or dropped layer and any header edit are detected; only the
safetensors framing's own layout (its JSON spacing, the order of its entries) is not covered.

**K order**: a weight is the ``[C_out, K]`` matrix ``weight.reshape(C_out, -1)``, K in PyTorch's
flatten order ``(C_in/groups, kh, kw)``, kw fastest; N:M groups are M consecutive entries of a
row along this K; blocks are B x B tiles of the matrix, edge tiles partial.

**Tensors** per layer ``L`` (all 1-D):

- ``L.values``: the kept weights in the stored dtype (fp16 by default), in row-major order of the
  matrix over the kept region: for ``hybrid``/``nm`` N slots per kept group (a tail group shorter
  than N has as many slots as entries), for ``block`` every entry of the kept blocks, for
  ``unstructured`` every kept entry;
- ``L.bitmap`` (``hybrid``, ``block``): uint8, ``numpy.packbits`` of the row-major
  ``[ceil(C_out/B), ceil(K/B)]`` block bitmap; for ``unstructured`` of the ``[C_out, K]`` mask;
- ``L.offsets`` (``hybrid``, ``nm``): uint8, ``numpy.packbits`` of each slot's position inside its
  group, log2(M) bits, most significant bit first; slots of a group are in increasing position;
- ``L.weight`` (``dense``): the plain weight in the stored dtype (channel-pruned layers are dense).

A group that keeps fewer than N weights is padded with its first unkept positions (value 0), so
the reader's weights still equal the writer's. ``hybrid`` needs B to be a multiple of M, so that
groups never straddle blocks. Every other state-dict tensor (biases, BatchNorm parameters and
buffers) is stored unchanged under ``state.<key>``, so the full model can be rebuilt
(`read_state_dict`).

**Versions**: 3 (`VERSION`) adds ``dense_gemms`` to version 2, which adds ``checksum`` and
``blocks_per_row`` to version 1 (a file of version 1 or 2 has no ``dense_gemms``: its
network's GEMMs are its layers). A version-1
file is still read, with one note on stderr (once per file and process) that it has no checksum,
and every check below but the checksum and the balance applies to it; other versions are
refused.

**Checks on read**: every failure is one `crisp.errors.UserError` line naming the file, the layer
and the bad value with what is allowed (exit status 2 in the CLIs), never a traceback. Opening a
file checks, with Python integers only (nothing is allocated from a header number): safetensors'
framing; every header and layer field present, of its JSON type and nothing else (unknown fields
are refused); ``format``, ``version``, ``dtype`` in `DTYPE_NAMES`, ``k_order`` equal to
`K_ORDER`; unique layer names; ``m`` in 2, 4, 8, 16, ``1 <= n < m``, ``1 <= b <=``
`MAX_BLOCK`, ``b`` a multiple of ``m`` for ``hybrid``; ``shape`` 2-D or 4-D with ``rows ==
shape[0]`` and ``K == prod(shape[1:])``; the counts equal to what the shape, N, M and B give (the
dense size, the bitmap's ``ceil(rows/B) * ceil(K/B)`` bits, N:M slots) and to the lengths of the
tensors, whose dtypes are the header's (``U8`` for bitmaps and offsets); no tensor outside a layer
but ``state.*``; the geometry against the shape (``K``, ``N * groups == rows``, ``kernel ==
shape[2:]``, ``in_shape[1] == shape[1] * groups``, ``out_shape == (batch, rows, H_out, W_out)``
with ``H_out = (H + 2 * padding - kh) // stride + 1`` (no dilation, as `crisp.lowering` records),
``P = batch * H_out * W_out``, the kind from ``groups``; a linear layer ``P = prod(in_shape[:-1])``,
``in_shape[-1] == K``); at most `MAX_WEIGHTS_PER_BYTE` weights per byte of the file; then the
checksum. Decoding a layer checks that bitmap and offset padding bits are 0, every block-row of a
bitmap keeps ``blocks_per_row`` blocks, the mask, blocks or N:M slots hold exactly the stored
values, and each group's offsets are strictly increasing and below the group's length (so below
M, at most N of them, none repeated).

This module is the format's one definition and its torch-free reader (numpy; ``bfloat16``
tensors, which numpy lacks, are widened to float32 exactly). `read_layers` is the simulator's
entry point and `size_breakdown` reports bytes; `crisp.compressed` adds the writer and the torch
views (`crisp.compressed.read_weights`, `crisp.compressed.read_state_dict`) on top.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import numpy as np
from safetensors import SafetensorError, safe_open

from crisp import ranges
from crisp.errors import UserError
from crisp.pattern_core import expand_blocks

FORMAT = "crisp-compressed"
VERSION = 3
"""The version `crisp.compressed.save` writes."""
VERSIONS = (1, 2, 3)
"""Versions the reader accepts: 1 (no checksum, read with a note on stderr), 2 and 3."""
K_ORDER = "(C_in/groups, kh, kw), kw fastest"
LAYER_SCHEMES = ("hybrid", "nm", "block", "unstructured", "dense")
DTYPE_NAMES = ("float16", "bfloat16", "float32")
"""Stored value dtypes (header field ``dtype``)."""
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
TENSOR_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}
"""safetensors' name of each stored value dtype (bitmaps and offsets are ``U8``)."""
_NUMPY = {"F16": "<f2", "F32": "<f4", "U8": "u1"}
MAX_BLOCK = int(ranges.BLOCK.high)
"""Largest block size B a file may declare: the pruner's own bound, `crisp.ranges.BLOCK` (the
reader expands a bitmap in B x B tiles)."""
MAX_WEIGHTS_PER_BYTE = 1024
"""Most GEMM weights (``rows * K`` summed over layers) a file may describe per byte of its own
size, checked before anything is decoded. A file pruned to 1/512 of its weights in fp16 needs
about 1/256 byte per weight, so every file the pruner writes is far inside the bound."""
HEADER_FIELDS = {"format", "version", "dtype", "k_order", "meta", "layers"}
"""The header's fields (version 2 adds ``checksum``, version 3 ``dense_gemms``)."""
DENSE_GEMM_FIELDS = {"name", "index", "geometry"}
"""A ``dense_gemms`` entry's fields."""
LAYER_FIELDS = {"name", "scheme", "shape", "rows", "K", "n", "m", "b", "counts", "geometry"}
"""A layer entry's fields (version 2 adds ``blocks_per_row`` to hybrid and block layers)."""
SCHEME_TENSORS = {"hybrid": ("values", "bitmap", "offsets"), "nm": ("values", "offsets"),
                  "block": ("values", "bitmap"), "unstructured": ("values", "bitmap"),
                  "dense": ("weight",)}
"""The tensors ``<layer>.<part>`` of each scheme."""
SCHEME_COUNTS = {"hybrid": ("values", "offsets", "bitmap_bits"), "nm": ("values", "offsets"),
                 "block": ("values", "bitmap_bits"), "unstructured": ("values", "bitmap_bits"),
                 "dense": ("values",)}
"""The ``counts`` of each scheme's layer entry."""
T = TypeVar("T")
GEOMETRY = ("kind", "P", "K", "N", "groups", "kernel", "stride", "padding", "in_shape",
            "out_shape")
"""The ``accel_sim.workload.GemmLayer`` fields a layer entry's ``geometry`` holds."""


@dataclass(frozen=True)
class StoredLayer:
    """One GEMM layer read back from a compressed file.

    Attributes:
        name: dotted module name.
        scheme: ``hybrid``, ``nm``, ``block``, ``unstructured`` or ``dense``.
        n, m: the N:M pattern (meaningful for ``hybrid``/``nm``).
        b: block size (meaningful for ``hybrid``/``block``).
        geometry: the ``accel_sim.workload.GemmLayer`` fields (``kind, P, K, N, groups, kernel,
            stride, padding, in_shape, out_shape``) at batch 1 and the stored input shape;
            ``GemmLayer(name=..., weight=..., **geometry)`` rebuilds the layer.
        weight: the masked weight as a float32 ``[C_out, K]`` numpy matrix (K in
            `K_ORDER`), exactly the stored dtype's values; None for a ``dense_gemms`` entry.
        shape: the weight tensor's own shape (e.g. ``(C_out, C_in/groups, kh, kw)``); ``()``
            for a ``dense_gemms`` entry.
    """

    name: str
    scheme: str
    n: int
    m: int
    b: int
    geometry: dict[str, object]
    weight: np.ndarray | None
    shape: tuple[int, ...]


# ---------------------------------------------------------------------------------------------
# Bit layouts (shared by the writer in crisp.compressed)
# ---------------------------------------------------------------------------------------------


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """uint8 ``numpy.packbits`` of ``bits`` flattened in row-major order."""
    return np.packbits(bits.astype(np.uint8).reshape(-1))


def unpack_bits(packed: np.ndarray, count: int, what: str) -> np.ndarray:
    """The first ``count`` bits of ``packed`` as bool; UserError if the byte count is wrong."""
    if packed.size != math.ceil(count / 8):
        raise UserError(f"compressed file: {what} has {packed.size} bytes, expected "
                        f"{math.ceil(count / 8)} for {count} bits")
    return np.unpackbits(packed)[:count].astype(bool)


def bits_per_offset(m: int) -> int:
    """Bits of one N:M slot position: log2(M)."""
    return int(math.log2(m))


def group_lengths(k: int, m: int) -> tuple[int, np.ndarray]:
    """Groups per row along K and the number of entries of each group (the tail may be short)."""
    count = math.ceil(k / m)
    return count, np.minimum(m, k - m * np.arange(count))


def slot_layout(region: np.ndarray, k: int, n: int, m: int) -> np.ndarray:
    """Bool ``[rows, groups, n]``: which N:M slots exist (group in the region, slot < length)."""
    count, length = group_lengths(k, m)
    in_region = region[:, ::m][:, :count]
    slot_ok = np.arange(n)[None, :] < np.minimum(n, length)[:, None]  # [groups, n]
    return in_region[:, :, None] & slot_ok[None, :, :]


def pack_offsets(offsets: np.ndarray, m: int) -> np.ndarray:
    """Slot positions as log2(M)-bit fields, most significant bit first, packed into bytes."""
    bits = bits_per_offset(m)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    return pack_bits((offsets[:, None] >> shifts) & 1)


def unpack_offsets(packed: np.ndarray, count: int, m: int, name: str) -> np.ndarray:
    """Inverse of `pack_offsets`: ``count`` slot positions as uint8."""
    bits = bits_per_offset(m)
    flat = unpack_bits(packed, count * bits, f"layer {name} offsets").reshape(count, bits)
    return (flat.astype(np.uint8) << np.arange(bits - 1, -1, -1, dtype=np.uint8)).sum(
        axis=1, dtype=np.uint8
    )


def decode_nm(
    values: np.ndarray, offsets: np.ndarray, region: np.ndarray, k: int, n: int, m: int
) -> np.ndarray:
    """The ``[rows, K]`` weight of N:M slots (zeros outside them), in ``values``' dtype.

    Args:
        values: the slots' values, row-major over the region's groups.
        offsets: each slot's position inside its group (``< m``).
        region: ``[rows, K]`` bool, True in the kept blocks (constant over each group).
    """
    rows = region.shape[0]
    layout = slot_layout(region, k, n, m)
    groups = layout.shape[1]
    # Absent slots write to an extra column m, dropped afterwards.
    index = np.full((rows, groups, n), m, dtype=np.int64)
    index[layout] = offsets.astype(np.int64)
    filled = np.zeros((rows, groups, n), dtype=values.dtype)
    filled[layout] = values
    out = np.zeros((rows, groups, m + 1), dtype=values.dtype)
    np.put_along_axis(out, index, filled, axis=2)
    return np.ascontiguousarray(out[:, :, :m].reshape(rows, -1)[:, :k])


# ---------------------------------------------------------------------------------------------
# Checksum (shared by the writer in crisp.compressed)
# ---------------------------------------------------------------------------------------------


def _framing(data: bytes) -> tuple[dict[str, tuple[str, list[int], int, int]], dict[str, str]]:
    """The safetensors framing of a file's bytes: (tensors, metadata).

    Each tensor is ``(dtype, shape, begin, end)``, ``begin:end`` its bytes in ``data``. The
    framing must already be valid (``safetensors`` checked it, or wrote it).
    """
    (size,) = struct.unpack("<Q", data[:8])
    table = json.loads(data[8:8 + size])
    metadata = table.pop("__metadata__", None) or {}
    return ({key: (t["dtype"], t["shape"], 8 + size + t["data_offsets"][0],
                   8 + size + t["data_offsets"][1]) for key, t in table.items()}, metadata)


def _canonical(header: dict[str, object]) -> bytes:
    """The header without its ``checksum`` as JSON with sorted keys and no spaces (ASCII)."""
    body = {key: value for key, value in header.items() if key != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def checksum_of(data: bytes) -> str:
    """``sha256:<hex>`` of a compressed file's bytes, as its header's ``checksum`` states it.

    SHA-256 over the header without its ``checksum`` field (`_canonical`), then, for every
    tensor of the file in sorted name order, the JSON ``[name, dtype, shape, byte count]``
    (compact, safetensors' dtype names, e.g. ``["3.values","F16",[2560],5120]``) followed by the
    tensor's raw bytes. ``data`` must be framed validly (a ``crisp`` header in the metadata).
    """
    tensors, metadata = _framing(data)
    digest = hashlib.sha256(_canonical(json.loads(metadata["crisp"])))
    view = memoryview(data)
    for key in sorted(tensors):
        dtype, shape, begin, end = tensors[key]
        digest.update(json.dumps([key, dtype, shape, end - begin], separators=(",", ":")).encode())
        digest.update(view[begin:end])
    return f"sha256:{digest.hexdigest()}"


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------


def _show(value: object) -> str:
    """``repr(value)`` on one line, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def row_slots(k: int, n: int, m: int) -> int:
    """N:M slots of one row of K entries: N per full group, ``min(N, tail)`` for a short tail."""
    return (k // m) * n + min(n, k % m)


def _ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` exactly, for Python ints of any size."""
    return -(-a // b)


_NOTED: set[Path] = set()
"""Version-1 files already noted on stderr in this process."""


class _File:
    """An open compressed file: its validated header and its tensors, decoded on demand.

    Opening checks everything that needs no decoding (`_check_header`, the sizes, the
    checksum); `layer_weight` checks the rest of a layer as it decodes it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"compressed file {self.path} does not exist")
        with self._guard(lambda: safe_open(str(self.path), framework="numpy")):
            pass  # safetensors validates the framing: offsets inside the file, sizes, dtypes
        self.data = self._guard(self.path.read_bytes)
        self.entries, metadata = _framing(self.data)
        if "crisp" not in metadata:
            raise UserError(f"compressed file {self.path} has no 'crisp' header: not written by "
                            "crisp")
        try:
            header = json.loads(metadata["crisp"])
        except (json.JSONDecodeError, RecursionError) as err:  # RecursionError: nested too deep
            raise UserError(f"compressed file {self.path}: bad JSON header ({err})") from None
        self._check_header(header)
        self.header: dict[str, object] = header
        if header["version"] == 1:
            self._note_version_1()
        elif checksum_of(self.data) != header["checksum"]:
            raise UserError(f"compressed file {self.path} is corrupted: its header or tensors do "
                            "not match the header's checksum")

    def _guard(self, read: Callable[[], T]) -> T:
        """``read()``, with safetensors' errors on a damaged file turned into one UserError."""
        try:
            return read()
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            text = " ".join(str(err).split())  # one line
            raise UserError(f"compressed file {self.path} is corrupt or truncated: "
                            f"{text}") from None

    def _fail(self, what: str) -> NoReturn:
        raise UserError(f"compressed file {self.path}: {what}")

    def _note_version_1(self) -> None:
        """One stderr line per file and process: version 1 has no checksum."""
        if self.path.resolve() not in _NOTED:
            _NOTED.add(self.path.resolve())
            print(f"note: {self.path} is {FORMAT} version 1 (no checksum): re-save it with "
                  "crisp prune to get corruption detection", file=sys.stderr)

    # -- header checks (Python ints only: nothing is allocated from a header number) ----------

    def _int(self, value: object, what: str, low: int = 0, high: int | None = None) -> int:
        if (isinstance(value, bool) or not isinstance(value, int) or value < low
                or (high is not None and value > high)):
            allowed = f"in {low}..{high}" if high is not None else f">= {low}"
            self._fail(f"{what} = {_show(value)}: allowed an integer {allowed}")
        return value

    def _ints(self, value: object, what: str, lengths: tuple[int, ...], low: int) -> list[int]:
        if not isinstance(value, list) or len(value) not in lengths:
            self._fail(f"{what} = {_show(value)}: allowed a list of "
                       f"{' or '.join(map(str, lengths))} integers")
        return [self._int(v, f"{what}[{i}]", low) for i, v in enumerate(value)]

    def _equal(self, what: str, value: object, expected: object, why: str) -> None:
        if value != expected:
            self._fail(f"{what} = {_show(value)}: allowed {_show(expected)} ({why})")

    def _fields(self, entry: object, expected: set[str], what: str) -> dict[str, object]:
        if not isinstance(entry, dict):
            self._fail(f"{what} = {_show(entry)}: allowed a JSON object")
        missing, extra = sorted(expected - set(entry)), sorted(set(entry) - expected)
        if missing:
            self._fail(f"{what} lacks the field {missing[0]!r}")
        if extra:
            self._fail(f"{what} has the unknown field {_show(extra[0])}: allowed "
                       f"{', '.join(sorted(expected))}")
        return entry

    def _check_header(self, header: object) -> None:
        """Check the header's types, ranges and sizes against each other and the tensors."""
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            self._fail(f"header format is not {FORMAT!r}")
        version = header.get("version")
        if isinstance(version, bool) or version not in VERSIONS:
            self._fail(f"unknown format version {_show(version)}: allowed "
                       f"{', '.join(map(str, VERSIONS))}")
        self._fields(header, HEADER_FIELDS | ({"checksum"} if version >= 2 else set())
                     | ({"dense_gemms"} if version >= 3 else set()), "header")
        if header["dtype"] not in DTYPE_NAMES:
            self._fail(f"unknown dtype {_show(header['dtype'])}: allowed {', '.join(DTYPE_NAMES)}")
        self._equal("k_order", header["k_order"], K_ORDER, "the only K order")
        if not isinstance(header["meta"], dict):
            self._fail(f"meta = {_show(header['meta'])}: allowed a JSON object")
        if version >= 2 and not (isinstance(header["checksum"], str)
                                 and re.fullmatch("sha256:[0-9a-f]{64}", header["checksum"])):
            self._fail(f"checksum = {_show(header['checksum'])}: allowed 'sha256:' and 64 "
                       "lowercase hex digits")
        layers = header["layers"]
        if not isinstance(layers, list) or not layers:
            self._fail(f"layers = {_show(layers)}: allowed a non-empty list")
        owned: set[str] = set()
        names: set[str] = set()
        for i, entry in enumerate(layers):
            owned |= self._check_layer(entry, i, header["dtype"], version, names)
        self._check_dense_gemms(header.get("dense_gemms", []), len(layers), names)
        stray = sorted(set(self.entries) - owned - {k for k in self.entries
                                                    if k.startswith("state.")})
        if stray:
            self._fail(f"tensor {stray[0]!r} belongs to no layer of the header")
        weights = sum(int(e["rows"]) * int(e["K"]) for e in layers)
        if weights > MAX_WEIGHTS_PER_BYTE * len(self.data):
            self._fail(f"the layers hold {weights} weights: allowed at most "
                       f"{MAX_WEIGHTS_PER_BYTE} per byte of the file ({len(self.data)} bytes)")

    def _check_layer(
        self, entry: object, index: int, dtype: str, version: int, names: set[str]
    ) -> set[str]:
        """Check ``layers[index]`` (``names``: the layers before it); returns its tensors."""
        if not isinstance(entry, dict):
            self._fail(f"layers[{index}] = {_show(entry)}: allowed a JSON object")
        name = self._new_name(entry.get("name"), f"layers[{index}]", "layer", names)
        where = f"layer {name}"
        scheme = entry.get("scheme")
        if not isinstance(scheme, str) or scheme not in LAYER_SCHEMES:
            self._fail(f"{where}: scheme {_show(scheme)}: allowed {', '.join(LAYER_SCHEMES)}")
        balance = {"blocks_per_row"} if version >= 2 and scheme in ("hybrid", "block") else set()
        self._fields(entry, LAYER_FIELDS | balance, where)
        shape = self._ints(entry["shape"], f"{where}: shape", (2, 4), 1)
        rows = self._int(entry["rows"], f"{where}: rows", 1)
        k = self._int(entry["K"], f"{where}: K", 1)
        self._equal(f"{where}: rows", rows, shape[0], "shape[0], C_out")
        self._equal(f"{where}: K", k, math.prod(shape[1:]), "the product of shape[1:]")
        m = self._int(entry["m"], f"{where}: m", 2, 16)
        if m not in (2, 4, 8, 16):
            self._fail(f"{where}: m = {m}: allowed 2, 4, 8 or 16")
        n = self._int(entry["n"], f"{where}: n", 1, m - 1)
        b = self._int(entry["b"], f"{where}: b", 1, MAX_BLOCK)
        if scheme == "hybrid" and b % m:
            self._fail(f"{where}: b = {b}: allowed a multiple of m = {m} (hybrid)")
        counts = self._fields(entry["counts"], set(SCHEME_COUNTS[scheme]), f"{where}: counts")
        for key, value in counts.items():
            self._int(value, f"{where}: counts.{key}")
        values = counts["values"]
        blocks = _ceil_div(rows, b) * _ceil_div(k, b)
        expected = {"dense": {"values": rows * k}, "unstructured": {"bitmap_bits": rows * k},
                    "nm": {"values": rows * row_slots(k, n, m), "offsets": values},
                    "block": {"bitmap_bits": blocks},
                    "hybrid": {"bitmap_bits": blocks, "offsets": values}}[scheme]
        for key, count in expected.items():
            self._equal(f"{where}: counts.{key}", counts[key], count, "from the shape, n, m, b")
        limit = rows * (row_slots(k, n, m) if scheme == "hybrid" else k)
        if values > limit:
            self._fail(f"{where}: counts.values = {values}: allowed at most {limit}")
        if balance and entry["blocks_per_row"] is not None:
            self._int(entry["blocks_per_row"], f"{where}: blocks_per_row", 0, _ceil_div(k, b))
        self._check_geometry(entry["geometry"], where, shape)
        sizes = {"values": values, "weight": values,
                 "bitmap": _ceil_div(counts.get("bitmap_bits", 0), 8),
                 "offsets": _ceil_div(counts.get("offsets", 0) * bits_per_offset(m), 8)}
        owned = set()
        for part in SCHEME_TENSORS[scheme]:
            key = f"{name}.{part}"
            if key not in self.entries:
                self._fail(f"tensor {key!r} is missing")
            kind, tshape, _, _ = self.entries[key]
            stored = TENSOR_DTYPES[dtype] if part in ("values", "weight") else "U8"
            self._equal(f"tensor {key} dtype", kind, stored, f"the header's dtype {dtype}")
            self._equal(f"tensor {key} shape", tshape, [sizes[part]], "from the header's counts")
            owned.add(key)
        return owned

    def _new_name(self, name: object, entry: str, kind: str, names: set[str]) -> str:
        """``name`` if it is a printable name of 1..200 characters not in ``names`` (added)."""
        if not isinstance(name, str) or not name.isprintable() or not 0 < len(name) <= 200:
            self._fail(f"{entry}.name = {_show(name)}: allowed a printable name of 1..200 "
                       "characters")
        if name in names:
            self._fail(f"{kind} {name} appears twice: allowed unique layer names")
        names.add(name)
        return name

    def _check_dense_gemms(self, entries: object, layers: int, names: set[str]) -> None:
        """Check ``dense_gemms``: unique names (also against the layers), increasing indices
        below the number of GEMMs, each geometry's fields and their types."""
        if not isinstance(entries, list):
            self._fail(f"dense_gemms = {_show(entries)}: allowed a list")
        last = -1
        for i, entry in enumerate(entries):
            entry = self._fields(entry, DENSE_GEMM_FIELDS, f"dense_gemms[{i}]")
            name = self._new_name(entry["name"], f"dense_gemms[{i}]", "dense GEMM", names)
            where = f"dense GEMM {name}"
            last = self._int(entry["index"], f"{where}: index", last + 1,
                             layers + len(entries) - 1)
            g, *_ = self._geometry_fields(entry["geometry"], f"{where}: geometry")
            if g["kind"] not in ("conv", "depthwise", "linear", "matmul"):
                self._fail(f"{where}: geometry.kind = {_show(g['kind'])}: allowed conv, "
                           "depthwise, linear, matmul")
            for f in ("in_shape", "out_shape"):
                self._ints(g[f], f"{where}: geometry.{f}", tuple(range(1, 7)), 1)

    def _geometry_fields(self, geometry: object, where: str) -> tuple:
        """A geometry's fields present and typed: (geometry, P, K, N, groups, kernel, stride,
        padding); its shapes are the caller's to check."""
        g = self._fields(geometry, set(GEOMETRY), where)
        p, k, n, groups = (self._int(g[f], f"{where}.{f}", 1) for f in ("P", "K", "N", "groups"))
        kernel = self._ints(g["kernel"], f"{where}.kernel", (2,), 1)
        stride = self._ints(g["stride"], f"{where}.stride", (2,), 1)
        padding = self._ints(g["padding"], f"{where}.padding", (2,), 0)
        return g, p, k, n, groups, kernel, stride, padding

    def _check_geometry(self, geometry: object, where: str, shape: list[int]) -> None:
        """The GEMM geometry against the weight's shape (``None``: the layer was not traced)."""
        if geometry is None:
            return
        where = f"{where}: geometry"
        g, p, k, n, groups, kernel, stride, padding = self._geometry_fields(geometry, where)
        conv = len(shape) == 4
        x = self._ints(g["in_shape"], f"{where}.in_shape", (4,) if conv else (2, 3, 4), 1)
        y = self._ints(g["out_shape"], f"{where}.out_shape", (len(x),), 1)
        self._equal(f"{where}.K", k, math.prod(shape[1:]), "the product of shape[1:]")
        self._equal(f"{where}.N * groups", n * groups, shape[0], "shape[0], C_out")
        if not conv:
            self._equal(f"{where}.kind", g["kind"], "linear", "a 2-D weight")
            self._equal(f"{where}.(groups, kernel, stride, padding)",
                        (groups, kernel, stride, padding), (1, [1, 1], [1, 1], [0, 0]), "linear")
            self._equal(f"{where}.in_shape[-1]", x[-1], k, "K")
            self._equal(f"{where}.out_shape", y, [*x[:-1], n], "in_shape with N last")
            self._equal(f"{where}.P", p, math.prod(x[:-1]), "the product of in_shape[:-1]")
            return
        kind = "depthwise" if 1 < groups == x[1] else "conv"
        self._equal(f"{where}.kind", g["kind"], kind, "from groups and in_shape")
        self._equal(f"{where}.kernel", kernel, shape[2:], "shape[2:]")
        self._equal(f"{where}.in_shape[1]", x[1], shape[1] * groups, "C_in = shape[1] * groups")
        self._equal(f"{where}.out_shape[:2]", y[:2], [x[0], shape[0]], "batch, C_out")
        for axis in (0, 1):
            side = (x[2 + axis] + 2 * padding[axis] - kernel[axis]) // stride[axis] + 1
            self._equal(f"{where}.out_shape[{2 + axis}]", y[2 + axis], side,
                        "(in + 2 * padding - kernel) // stride + 1")
        self._equal(f"{where}.P", p, y[0] * y[2] * y[3], "batch * H_out * W_out of out_shape")

    # -- tensors --------------------------------------------------------------------------------

    def tensor(self, key: str) -> np.ndarray:
        """Tensor ``key`` as a 1-D numpy copy (bfloat16 widened to float32 exactly)."""
        dtype, shape, begin, _ = self.entries[key]
        raw = np.frombuffer(self.data, dtype="<u2" if dtype == "BF16" else _NUMPY[dtype],
                            count=math.prod(shape), offset=begin)
        if dtype == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.copy()

    def nbytes(self, key: str) -> int:
        """Bytes of tensor ``key`` in the file."""
        _, _, begin, end = self.entries[key]
        return end - begin

    def _bits(self, name: str, part: str, count: int) -> np.ndarray:
        """The first ``count`` bits of tensor ``name.part``; the padding bits must be 0."""
        packed = self.tensor(f"{name}.{part}")
        bits = unpack_bits(packed, count, f"layer {name} {part}")
        if count % 8 and int(packed[-1]) & (0xFF >> (count % 8)):
            self._fail(f"layer {name}: the padding bits after the {count} bits of its {part} are "
                       "not 0: allowed 0")
        return bits

    def _count(self, name: str, what: str, found: int, stored: int) -> None:
        if found != stored:
            self._fail(f"layer {name}: {what} = {found}: allowed {stored} (its stored values)")

    def layer_weight(self, entry: dict[str, object]) -> np.ndarray:
        """The ``[rows, K]`` weight of one header entry (float16/float32 as stored, bfloat16 as
        float32), after the checks that need the bitmaps and offsets decoded."""
        name, scheme = str(entry["name"]), entry["scheme"]
        rows, k, n, m, b = (int(entry[f]) for f in ("rows", "K", "n", "m", "b"))
        values = self.tensor(f"{name}.weight" if scheme == "dense" else f"{name}.values")
        if scheme == "dense":
            return values.reshape(rows, k)
        out = np.zeros((rows, k), dtype=values.dtype)
        if scheme == "unstructured":
            mask = self._bits(name, "bitmap", rows * k).reshape(rows, k)
            self._count(name, "kept weights of its mask", int(mask.sum()), values.size)
            out[mask] = values
            return out
        region = np.ones((rows, k), dtype=bool)
        if scheme in ("hybrid", "block"):
            shape = (math.ceil(rows / b), math.ceil(k / b))
            bitmap = self._bits(name, "bitmap", shape[0] * shape[1]).reshape(shape)
            self._check_balance(name, bitmap, entry.get("blocks_per_row"))
            region = expand_blocks(bitmap, b, (rows, k))
        if scheme == "block":
            self._count(name, "weights in its kept blocks", int(region.sum()), values.size)
            out[region] = values
            return out
        layout = slot_layout(region, k, n, m)
        self._count(name, "N:M slots in its kept blocks", int(layout.sum()), values.size)
        offsets = unpack_offsets(self.tensor(f"{name}.offsets"), values.size, m, name)
        self._check_offsets(name, offsets, layout, k, m)
        return decode_nm(values, offsets, region, k, n, m)

    def _check_balance(self, name: str, bitmap: np.ndarray, declared: object) -> None:
        """Every block-row keeps the declared number of blocks (None: not declared balanced)."""
        if declared is None:
            return
        kept = bitmap.sum(axis=1)
        bad = np.flatnonzero(kept != declared)
        if bad.size:
            self._fail(f"layer {name}: block-row {bad[0]} keeps {kept[bad[0]]} blocks: allowed "
                       f"{declared} (the header's blocks_per_row)")

    def _check_offsets(
        self, name: str, offsets: np.ndarray, layout: np.ndarray, k: int, m: int
    ) -> None:
        """Slot positions inside their group and strictly increasing within it."""
        length = group_lengths(k, m)[1]
        index = np.full(layout.shape, -1, dtype=np.int64)
        index[layout] = offsets
        outside = layout & (index >= length[None, :, None])
        increasing = ~layout[:, :, 1:] | (index[:, :, 1:] > index[:, :, :-1])
        for bad, allowed in ((outside, "positions below the group's length"),
                             (~increasing, "strictly increasing positions")):
            if bad.any():
                row, group = (int(i) for i in np.argwhere(bad)[0][:2])
                self._fail(f"layer {name}: row {row} group {group} has offsets "
                           f"{index[row, group][layout[row, group]].tolist()}: allowed {allowed} "
                           f"(0..{int(length[group]) - 1}, M={m})")


def open_file(path: str | Path) -> _File:
    """Open and validate a compressed file; every malformation is a UserError.

    The result's ``header`` is the checked JSON header; ``tensor(key)`` and
    ``layer_weight(entry)`` decode tensors on demand (numpy), so a reader decodes only what it
    needs. A version-1 file (no checksum) prints a one-line note to stderr, once per process.
    """
    return _File(path)


def read_header(path: str | Path) -> dict[str, object]:
    """The JSON header of a compressed file (format, version, dtype, meta, layers, checksum)."""
    return open_file(path).header


def read_layers(path: str | Path) -> list[StoredLayer]:
    """The GEMM layers of a compressed file for the simulator, in execution order (no torch):
    its layers and, in their places, its ``dense_gemms`` (scheme ``dense``, no weight).

    Each `StoredLayer` has the masked ``[C_out, K]`` weight as float32 numpy (K order
    `K_ORDER`, the same as ``accel_sim.workload``'s im2col), the scheme, N, M, B and the
    GEMM geometry at batch 1; ``GemmLayer(name=l.name, weight=l.weight, **l.geometry)`` is the
    simulator's layer (scale ``P`` by the batch for larger batches).

    Raises:
        UserError: a missing, corrupt or truncated file, an unknown version, a checksum
            mismatch, a failed check (see the module docstring) or a layer without geometry.
    """
    handle = open_file(path)
    layers = []
    for e in handle.header["layers"]:
        if e["geometry"] is None:
            handle._fail(f"layer {e['name']} has no geometry (it did not run when the model was "
                         "traced): cannot simulate it")
        weight = handle.layer_weight(e).astype(np.float32)
        layers.append(StoredLayer(e["name"], e["scheme"], e["n"], e["m"], e["b"],
                                  _tuples(e["geometry"]), weight, tuple(e["shape"])))
    for e in handle.header.get("dense_gemms", []):  # increasing indices: insert in order
        layers.insert(e["index"], StoredLayer(e["name"], "dense", 0, 0, 0, _tuples(e["geometry"]),
                                              None, ()))
    return layers


def _tuples(geometry: dict[str, object]) -> dict[str, object]:
    return {f: tuple(v) if isinstance(v, list) else v for f, v in geometry.items()}


def size_breakdown(path: str | Path) -> dict[str, int]:
    """Bytes of a compressed file by part, and the dense equivalent.

    Returns:
        ``values_bytes`` (kept weights and dense layers), ``bitmap_bytes``, ``offsets_bytes``,
        ``other_bytes`` (biases, BatchNorm), ``header_bytes`` (JSON and safetensors framing),
        ``total_bytes`` (the file), ``dense_bytes`` (all GEMM weights dense in the stored dtype)
        and ``dense_fp32_bytes``.
    """
    handle = open_file(path)
    parts = {"values_bytes": 0, "bitmap_bytes": 0, "offsets_bytes": 0, "other_bytes": 0}
    for key in handle.entries:
        size = handle.nbytes(key)
        part = key.rsplit(".", 1)[-1]
        if key.startswith("state."):
            parts["other_bytes"] += size
        elif part in ("values", "weight"):
            parts["values_bytes"] += size
        else:
            parts[f"{part}_bytes"] += size
    total = len(handle.data)
    weights = sum(int(e["rows"]) * int(e["K"]) for e in handle.header["layers"])
    itemsize = DTYPE_BYTES[handle.header["dtype"]]
    return {**parts, "header_bytes": total - sum(parts.values()), "total_bytes": total,
            "dense_bytes": weights * itemsize, "dense_fp32_bytes": weights * 4}
