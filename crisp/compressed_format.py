"""The compressed model format: a ``.safetensors`` file with a JSON header in its metadata.

**Header** (metadata key ``crisp``, a JSON string): ``format`` (``crisp-compressed``),
``version`` (`VERSION`), ``dtype`` of the stored values, ``k_order``, free-form ``meta``
(model name, classes, ...) and one entry per Conv2d/Linear layer, in execution order:
``name``, ``scheme`` (``hybrid``, ``nm``, ``block``, ``unstructured`` or ``dense``), ``shape`` (the
weight's own shape), ``rows`` (C_out) and ``K``, ``n``, ``m``, ``b``, the counts of values,
offsets and bitmap bits, and the layer's GEMM geometry as ``accel_sim.workload.GemmLayer`` fields
(``kind, P, K, N, groups, kernel, stride, padding, in_shape, out_shape``) for the input shape in
``meta["input_shape"]`` (batch 1), so a simulator can rebuild the workload from the file alone.

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

This module is the format's one definition and its torch-free reader (numpy, via
``safetensors``' numpy backend; ``bfloat16`` tensors, which numpy lacks, are read from the file's
bytes and widened to float32 exactly). `read_layers` is the simulator's entry point and
`size_breakdown` reports bytes; `crisp.compressed` adds the writer and the torch views
(`crisp.compressed.read_weights`, `crisp.compressed.read_state_dict`) on top.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from safetensors import SafetensorError, safe_open

from crisp.errors import UserError
from crisp.pattern_core import expand_blocks

FORMAT = "crisp-compressed"
VERSION = 1
K_ORDER = "(C_in/groups, kh, kw), kw fastest"
LAYER_SCHEMES = ("hybrid", "nm", "block", "unstructured", "dense")
DTYPE_NAMES = ("float16", "bfloat16", "float32")
"""Stored value dtypes (header field ``dtype``)."""
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
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
            `K_ORDER`), exactly the stored dtype's values.
        shape: the weight tensor's own shape (e.g. ``(C_out, C_in/groups, kh, kw)``).
    """

    name: str
    scheme: str
    n: int
    m: int
    b: int
    geometry: dict[str, object]
    weight: np.ndarray
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
# Reader
# ---------------------------------------------------------------------------------------------


class _File:
    """An open compressed file: its validated header and its tensors, loaded on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"compressed file {self.path} does not exist")
        self._handle = self._guard(lambda: safe_open(str(self.path), framework="numpy"))
        metadata = self._guard(lambda: self._handle.metadata()) or {}
        self.keys = set(self._guard(lambda: list(self._handle.keys())))
        if "crisp" not in metadata:
            raise UserError(f"compressed file {self.path} has no 'crisp' header: not written by "
                            "crisp")
        try:
            header = json.loads(metadata["crisp"])
        except json.JSONDecodeError as err:
            raise UserError(f"compressed file {self.path}: bad JSON header ({err})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise UserError(f"compressed file {self.path}: header format is not {FORMAT!r}")
        if header.get("version") != VERSION:
            raise UserError(f"compressed file {self.path}: unknown format version "
                            f"{header.get('version')!r}: allowed {VERSION}")
        if header.get("dtype") not in DTYPE_NAMES:
            raise UserError(f"compressed file {self.path}: unknown dtype {header.get('dtype')!r}")
        self.header = header

    def _guard(self, read: Callable[[], T]) -> T:
        """``read()``, with safetensors' errors on a damaged file turned into one UserError."""
        try:
            return read()
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise UserError(f"compressed file {self.path} is corrupt or truncated: {err}") from None

    def dtype(self, key: str) -> str:
        """The safetensors dtype name of tensor ``key`` (``F16``, ``BF16``, ``U8``, ...)."""
        return self._guard(lambda: self._handle.get_slice(key).get_dtype())

    def nbytes(self, key: str) -> int:
        """Bytes of tensor ``key`` in the file."""
        shape = self._guard(lambda: self._handle.get_slice(key).get_shape())
        width = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2,
                 "BF16": 2, "I16": 2, "U16": 2}.get(self.dtype(key), 1)
        return math.prod(shape) * width

    def tensor(self, key: str, count: int | None = None) -> np.ndarray:
        """Tensor ``key`` as numpy (bfloat16 widened to float32 exactly), flattened.

        Raises:
            UserError: the tensor is missing or has not ``count`` entries.
        """
        if key not in self.keys:
            raise UserError(f"compressed file: tensor {key!r} is missing")
        if self.dtype(key) == "BF16":
            t = self._bf16(key)
        else:
            t = self._guard(lambda: self._handle.get_tensor(key)).reshape(-1)
        if count is not None and t.size != count:
            raise UserError(f"compressed file: tensor {key!r} has {t.size} entries, the header "
                            f"says {count}")
        return t

    def _bf16(self, key: str) -> np.ndarray:
        """A bfloat16 tensor read from the file's bytes (safetensors' layout) as float32."""
        with self.path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            entry = json.loads(handle.read(size))[key]
            begin, end = entry["data_offsets"]
            handle.seek(8 + size + begin)
            raw = handle.read(end - begin)
        if len(raw) != end - begin:
            raise UserError(f"compressed file {self.path} is corrupt or truncated: tensor "
                            f"{key!r} is cut short")
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)

    def layer_weight(self, entry: dict[str, object]) -> np.ndarray:
        """The ``[rows, K]`` weight of one header entry (float16/float32 as stored, bfloat16 as
        float32)."""
        try:
            name, scheme = entry["name"], entry["scheme"]
            rows, k, n, m, b = (int(entry[f]) for f in ("rows", "K", "n", "m", "b"))
            counts = entry["counts"]
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"compressed file: layer entry lacks a field ({err})") from None
        if scheme not in LAYER_SCHEMES:
            raise UserError(f"compressed file: layer {name}: unknown scheme {scheme!r}")
        values = self.tensor(f"{name}.values" if scheme != "dense" else f"{name}.weight")
        if scheme == "dense":
            if values.size != rows * k:
                raise UserError(f"compressed file: layer {name} has {values.size} weights, the "
                                f"header says {rows}x{k}")
            return values.reshape(rows, k)
        out = np.zeros((rows, k), dtype=values.dtype)
        if scheme == "unstructured":
            mask = unpack_bits(self.tensor(f"{name}.bitmap"), rows * k, f"layer {name} mask")
            mask = mask.reshape(rows, k)
            self.tensor(f"{name}.values", int(mask.sum()))
            out[mask] = values
            return out
        region = np.ones((rows, k), dtype=bool)
        if scheme in ("hybrid", "block"):
            shape = (math.ceil(rows / b), math.ceil(k / b))
            bits = unpack_bits(self.tensor(f"{name}.bitmap"), shape[0] * shape[1],
                               f"layer {name} bitmap")
            region = expand_blocks(bits.reshape(shape), b, (rows, k))
        if scheme == "block":
            self.tensor(f"{name}.values", int(region.sum()))
            out[region] = values
            return out
        slots = int(slot_layout(region, k, n, m).sum())
        self.tensor(f"{name}.values", slots)
        if counts.get("values") != slots:
            raise UserError(f"compressed file: layer {name} header counts {counts.get('values')} "
                            f"values, its bitmap {slots}")
        offsets = unpack_offsets(self.tensor(f"{name}.offsets"), slots, m, name)
        if offsets.size and int(offsets.max()) >= m:
            raise UserError(f"compressed file: layer {name} has an offset >= M={m}")
        return decode_nm(values, offsets, region, k, n, m)


def open_file(path: str | Path) -> _File:
    """Open and validate a compressed file; every malformation is a UserError.

    The result's ``header`` is the JSON header; ``tensor(key)`` and ``layer_weight(entry)`` read
    tensors on demand (numpy), so a reader loads only what it needs.
    """
    return _File(path)


def read_header(path: str | Path) -> dict[str, object]:
    """The JSON header of a compressed file (format, version, dtype, meta, layers)."""
    return open_file(path).header


def read_layers(path: str | Path) -> list[StoredLayer]:
    """The GEMM layers of a compressed file for the simulator, in execution order (no torch).

    Each `StoredLayer` has the masked ``[C_out, K]`` weight as float32 numpy (K order
    `K_ORDER`, the same as ``accel_sim.workload``'s im2col), the scheme, N, M, B and the
    GEMM geometry at batch 1; ``GemmLayer(name=l.name, weight=l.weight, **l.geometry)`` is the
    simulator's layer (scale ``P`` by the batch for larger batches).

    Raises:
        UserError: a missing, corrupt or truncated file, an unknown version, or sizes that
            disagree with the header.
    """
    handle = open_file(path)
    layers = []
    for e in handle.header["layers"]:
        weight = handle.layer_weight(e).astype(np.float32)
        geometry = {f: tuple(v) if isinstance(v, list) else v
                    for f, v in (e.get("geometry") or {}).items()}
        layers.append(StoredLayer(e["name"], e["scheme"], int(e["n"]), int(e["m"]), int(e["b"]),
                                  geometry, weight, tuple(e["shape"])))
    return layers


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
    for key in handle.keys:
        size = handle.nbytes(key)
        part = key.rsplit(".", 1)[-1]
        if key.startswith("state."):
            parts["other_bytes"] += size
        elif part in ("values", "weight"):
            parts["values_bytes"] += size
        else:
            parts[f"{part}_bytes"] += size
    total = handle.path.stat().st_size
    weights = sum(int(e["rows"]) * int(e["K"]) for e in handle.header["layers"])
    itemsize = DTYPE_BYTES[handle.header["dtype"]]
    return {**parts, "header_bytes": total - sum(parts.values()), "total_bytes": total,
            "dense_bytes": weights * itemsize, "dense_fp32_bytes": weights * 4}
