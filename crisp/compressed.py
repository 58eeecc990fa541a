"""The compressed model format: a ``.safetensors`` file with a JSON header in its metadata.

**Header** (metadata key ``crisp``, a JSON string): ``format`` (``crisp-compressed``),
``version`` (:data:`VERSION`), ``dtype`` of the stored values, ``k_order``, free-form ``meta``
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
(:func:`read_state_dict`).

:func:`read_layers` is the simulator's entry point; :func:`size_breakdown` reports bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from crisp.errors import UserError
from crisp.io import write_atomic
from crisp.masks import gemm_layers, weight_matrix
from crisp.patterns import bitmap_of, check_block, check_nm, expand_blocks

FORMAT = "crisp-compressed"
VERSION = 1
K_ORDER = "(C_in/groups, kh, kw), kw fastest"
LAYER_SCHEMES = ("hybrid", "nm", "block", "unstructured", "dense")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_GEOMETRY = ("kind", "P", "K", "N", "groups", "kernel", "stride", "padding", "in_shape",
             "out_shape")


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
            :data:`K_ORDER`), exactly the stored dtype's values.
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
# Encoding helpers (pure)
# ---------------------------------------------------------------------------------------------


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.astype(np.uint8).reshape(-1))


def _unpack(packed: np.ndarray, count: int, what: str) -> np.ndarray:
    if packed.size != math.ceil(count / 8):
        raise UserError(f"compressed file: {what} has {packed.size} bytes, expected "
                        f"{math.ceil(count / 8)} for {count} bits")
    return np.unpackbits(packed)[:count].astype(bool)


def _bits_per_offset(m: int) -> int:
    return int(math.log2(m))


def _groups(rows: int, k: int, m: int) -> tuple[int, np.ndarray]:
    """Groups per row along K and the number of entries of each group (the tail may be short)."""
    count = math.ceil(k / m)
    return count, np.minimum(m, k - m * np.arange(count))


def _slot_layout(region: np.ndarray, k: int, n: int, m: int) -> np.ndarray:
    """Bool ``[rows, groups, n]``: which N:M slots exist (group in the region, slot < length)."""
    count, length = _groups(region.shape[0], k, m)
    in_region = region[:, ::m][:, :count]
    slot_ok = np.arange(n)[None, :] < np.minimum(n, length)[:, None]  # [groups, n]
    return in_region[:, :, None] & slot_ok[None, :, :]


def encode_nm(
    weight: torch.Tensor, mask: torch.Tensor, region: np.ndarray, n: int, m: int, name: str
) -> tuple[torch.Tensor, np.ndarray]:
    """N:M slots of the groups inside ``region``: (values, slot positions), row-major.

    Args:
        weight: ``[rows, K]`` masked weight in the stored dtype.
        mask: ``[rows, K]`` bool keep-mask; at most N kept per group.
        region: ``[rows, K]`` bool, True in the kept blocks (constant over each group).
    """
    rows, k = weight.shape
    pad = (-k) % m
    mask_g = torch.nn.functional.pad(mask, (0, pad)).reshape(rows, -1, m)
    kept = mask_g.sum(dim=2)
    if bool((kept > n).any()):
        raise UserError(f"layer {name}: a group of {m} keeps {int(kept.max())} weights, more than "
                        f"N={n}: not an {n}:{m} mask")
    valid = torch.arange(m)[None, :] < torch.as_tensor(_groups(rows, k, m)[1])[:, None]
    # Kept positions first, then unkept valid ones, each by position; padding never.
    key = mask_g.to(torch.int64) * 2 * m + valid.to(torch.int64)[None] * m - torch.arange(m)
    key = key.masked_fill(~valid[None], -4 * m)
    chosen = torch.sort(key.topk(n, dim=2).indices, dim=2).values  # [rows, groups, n]
    layout = torch.from_numpy(_slot_layout(region, k, n, m))
    w_g = torch.nn.functional.pad(weight, (0, pad)).reshape(rows, -1, m)
    values = torch.gather(w_g, 2, chosen)[layout]
    return values, chosen[layout].numpy().astype(np.uint8)


def decode_nm(
    values: torch.Tensor, offsets: np.ndarray, region: np.ndarray, k: int, n: int, m: int
) -> torch.Tensor:
    """Inverse of :func:`encode_nm`: the ``[rows, K]`` weight (zeros outside the slots)."""
    rows = region.shape[0]
    layout = torch.from_numpy(_slot_layout(region, k, n, m))
    groups = layout.shape[1]
    # Absent slots write to an extra column m, dropped afterwards.
    index = torch.full((rows, groups, n), m, dtype=torch.int64)
    index[layout] = torch.from_numpy(offsets.astype(np.int64))
    filled = torch.zeros((rows, groups, n), dtype=values.dtype)
    filled[layout] = values
    out = torch.zeros((rows, groups, m + 1), dtype=values.dtype)
    out.scatter_(2, index, filled)
    return out[:, :, :m].reshape(rows, -1)[:, :k].clone()


def _pack_offsets(offsets: np.ndarray, m: int) -> np.ndarray:
    bits = _bits_per_offset(m)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    return _pack((offsets[:, None] >> shifts) & 1)


def _unpack_offsets(packed: np.ndarray, count: int, m: int, name: str) -> np.ndarray:
    bits = _bits_per_offset(m)
    flat = _unpack(packed, count * bits, f"layer {name} offsets").reshape(count, bits)
    return (flat.astype(np.uint8) << np.arange(bits - 1, -1, -1, dtype=np.uint8)).sum(
        axis=1, dtype=np.uint8
    )


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------


def _encode_layer(
    name: str, weight: torch.Tensor, mask: torch.Tensor, scheme: str, n: int, m: int, b: int
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Tensors and counts of one ``[rows, K]`` layer (``weight`` already in the stored dtype)."""
    rows, k = weight.shape
    weight = torch.where(mask, weight, 0.0)  # masked entries +0.0 exactly (never -0.0)
    if scheme == "dense":
        return {"weight": weight.reshape(-1)}, {"values": weight.numel()}
    if scheme == "unstructured":
        bits = mask.numpy()
        return ({"values": weight[mask], "bitmap": torch.from_numpy(_pack(bits))},
                {"values": int(mask.sum()), "bitmap_bits": bits.size})
    tensors: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    region = np.ones((rows, k), dtype=bool)
    if scheme in ("hybrid", "block"):
        bitmap = bitmap_of(mask, b)
        region = expand_blocks(bitmap, b, (rows, k)).numpy()
        tensors["bitmap"] = torch.from_numpy(_pack(bitmap.numpy()))
        counts["bitmap_bits"] = bitmap.numel()
    if scheme == "block":
        tensors["values"] = weight[torch.from_numpy(region)]
        counts["values"] = int(region.sum())
        return tensors, counts
    values, offsets = encode_nm(weight, mask, region, n, m, name)
    tensors["values"] = values
    tensors["offsets"] = torch.from_numpy(_pack_offsets(offsets, m))
    counts.update(values=values.numel(), offsets=offsets.size)
    return tensors, counts


def _geometry(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict[str, object]]:
    from accel_sim.workload import lower_model  # the simulator's lowering defines the geometry

    return {
        g.name: {f: list(v) if isinstance(v, tuple) else v for f in _GEOMETRY
                 for v in [getattr(g, f)]}
        for g in lower_model(model, input_shape)
    }


def save(
    model: nn.Module,
    path: str | Path,
    masks: dict[str, torch.Tensor],
    patterns: dict[str, str],
    n: int,
    m: int,
    b: int,
    input_shape: tuple[int, ...],
    dtype: str = "float16",
    meta: dict[str, object] | None = None,
) -> dict[str, int]:
    """Write ``model`` (plain or squashed weights) in the compressed format, atomically.

    Args:
        model: the pruned model.
        path: the ``.safetensors`` file to write.
        masks: bool masks by dotted weight name (``<module>.weight``); a layer without one uses
            its non-zero entries.
        patterns: scheme of each layer by module name (:data:`LAYER_SCHEMES`); missing = dense.
        n, m: the N:M pattern; b: the block size (B a multiple of M for hybrid layers).
        input_shape: (C, H, W) of one input sample, for the GEMM geometry.
        dtype: stored value dtype, one of :data:`DTYPES`.
        meta: JSON-ready extra header fields (model name, classes, ...).

    Returns:
        :func:`size_breakdown` of the written file.
    """
    check_nm(n, m)
    check_block(b)
    if dtype not in DTYPES:
        raise UserError(f"stored dtype {dtype!r}: allowed {', '.join(DTYPES)}")
    geometry = _geometry(model, tuple(input_shape))
    tensors: dict[str, torch.Tensor] = {}
    layers = []
    gemm_keys = set()
    for name, module in gemm_layers(model).items():
        scheme = patterns.get(name, "dense")
        if scheme not in LAYER_SCHEMES:
            raise UserError(f"layer {name}: scheme {scheme!r}: allowed {', '.join(LAYER_SCHEMES)}")
        if scheme == "hybrid" and b % m:
            raise UserError(f"block size {b} must be a multiple of M={m} for hybrid layers")
        w = weight_matrix(module).detach().to(DTYPES[dtype])
        mask = masks.get(f"{name}.weight", w != 0).reshape(w.shape).to(torch.bool)
        parts, counts = _encode_layer(name, w, mask, scheme, n, m, b)
        tensors.update({f"{name}.{part}": t.contiguous() for part, t in parts.items()})
        gemm_keys.add(f"{name}.weight")
        layers.append({"name": name, "scheme": scheme, "shape": list(module.weight.shape),
                       "rows": w.shape[0], "K": w.shape[1], "n": n, "m": m, "b": b,
                       "counts": counts, "geometry": geometry.get(name)})
    for key, value in model.state_dict().items():
        if key not in gemm_keys:
            tensors[f"state.{key}"] = value.detach().contiguous()
    order = list(geometry)
    layers.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else len(order))
    header = {"format": FORMAT, "version": VERSION, "dtype": dtype, "k_order": K_ORDER,
              "meta": {**(meta or {}), "input_shape": list(input_shape)}, "layers": layers}
    write_atomic(Path(path), lambda tmp: save_file(tensors, str(tmp),
                                                   metadata={"crisp": json.dumps(header)}))
    return size_breakdown(path)


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------


def _open(path: str | Path) -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    """Header and tensors of a compressed file; every malformation is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"compressed file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise UserError(f"compressed file {path} is corrupt or truncated: {err}") from None
    if "crisp" not in metadata:
        raise UserError(f"compressed file {path} has no 'crisp' header: not written by crisp")
    try:
        header = json.loads(metadata["crisp"])
    except json.JSONDecodeError as err:
        raise UserError(f"compressed file {path}: bad JSON header ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UserError(f"compressed file {path}: header format is not {FORMAT!r}")
    if header.get("version") != VERSION:
        raise UserError(f"compressed file {path}: unknown format version "
                        f"{header.get('version')!r}: allowed {VERSION}")
    if header.get("dtype") not in DTYPES:
        raise UserError(f"compressed file {path}: unknown dtype {header.get('dtype')!r}")
    return header, tensors


def _tensor(tensors: dict[str, torch.Tensor], key: str, count: int | None = None) -> torch.Tensor:
    if key not in tensors:
        raise UserError(f"compressed file: tensor {key!r} is missing")
    t = tensors[key]
    if count is not None and t.numel() != count:
        raise UserError(f"compressed file: tensor {key!r} has {t.numel()} entries, the header "
                        f"says {count}")
    return t


def _decode_layer(entry: dict[str, object], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``[rows, K]`` weight of one header entry, in the stored dtype."""
    try:
        name, scheme = entry["name"], entry["scheme"]
        rows, k, n, m, b = (int(entry[f]) for f in ("rows", "K", "n", "m", "b"))
        counts = entry["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"compressed file: layer entry lacks a field ({err})") from None
    if scheme not in LAYER_SCHEMES:
        raise UserError(f"compressed file: layer {name}: unknown scheme {scheme!r}")
    values = _tensor(tensors, f"{name}.values" if scheme != "dense" else f"{name}.weight")
    if scheme == "dense":
        if values.numel() != rows * k:
            raise UserError(f"compressed file: layer {name} has {values.numel()} weights, the "
                            f"header says {rows}x{k}")
        return values.reshape(rows, k)
    out = torch.zeros((rows, k), dtype=values.dtype)
    if scheme == "unstructured":
        mask = _unpack(_tensor(tensors, f"{name}.bitmap").numpy(), rows * k, f"layer {name} mask")
        mask = torch.from_numpy(mask.reshape(rows, k))
        _tensor(tensors, f"{name}.values", int(mask.sum()))
        out[mask] = values
        return out
    region = np.ones((rows, k), dtype=bool)
    if scheme in ("hybrid", "block"):
        shape = (math.ceil(rows / b), math.ceil(k / b))
        bits = _unpack(_tensor(tensors, f"{name}.bitmap").numpy(), shape[0] * shape[1],
                       f"layer {name} bitmap")
        region = expand_blocks(torch.from_numpy(bits.reshape(shape)), b, (rows, k)).numpy()
    if scheme == "block":
        _tensor(tensors, f"{name}.values", int(region.sum()))
        out[torch.from_numpy(region)] = values
        return out
    slots = int(_slot_layout(region, k, n, m).sum())
    _tensor(tensors, f"{name}.values", slots)
    if counts.get("values") != slots:
        raise UserError(f"compressed file: layer {name} header counts {counts.get('values')} "
                        f"values, its bitmap {slots}")
    offsets = _unpack_offsets(_tensor(tensors, f"{name}.offsets").numpy(), slots, m, name)
    if offsets.size and int(offsets.max()) >= m:
        raise UserError(f"compressed file: layer {name} has an offset >= M={m}")
    return decode_nm(values, offsets, region, k, n, m)


def read_header(path: str | Path) -> dict[str, object]:
    """The JSON header of a compressed file (format, version, dtype, meta, layers)."""
    return _open(path)[0]


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every GEMM layer's masked weight, in its own shape and the stored dtype, by weight name."""
    header, tensors = _open(path)
    return {
        f"{e['name']}.weight": _decode_layer(e, tensors).reshape(e["shape"])
        for e in header["layers"]
    }


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The full state dict (GEMM weights as float32 plus the stored biases / BatchNorm tensors)."""
    _, tensors = _open(path)
    state = {k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")}
    state.update({k: v.float() for k, v in read_weights(path).items()})
    return state


def read_layers(path: str | Path) -> list[StoredLayer]:
    """The GEMM layers of a compressed file for the simulator, in execution order.

    Each :class:`StoredLayer` has the masked ``[C_out, K]`` weight as float32 numpy (K order
    :data:`K_ORDER`, the same as ``accel_sim.workload``'s im2col), the scheme, N, M, B and the
    GEMM geometry at batch 1; ``GemmLayer(name=l.name, weight=l.weight, **l.geometry)`` is the
    simulator's layer (scale ``P`` by the batch for larger batches).

    Raises:
        UserError: a missing, corrupt or truncated file, an unknown version, or sizes that
            disagree with the header.
    """
    header, tensors = _open(path)
    layers = []
    for e in header["layers"]:
        weight = _decode_layer(e, tensors).to(torch.float32).numpy()
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
    header, tensors = _open(path)
    parts = {"values_bytes": 0, "bitmap_bytes": 0, "offsets_bytes": 0, "other_bytes": 0}
    for key, t in tensors.items():
        size = t.numel() * t.element_size()
        part = key.rsplit(".", 1)[-1]
        if key.startswith("state."):
            parts["other_bytes"] += size
        elif part in ("values", "weight"):
            parts["values_bytes"] += size
        else:
            parts[f"{part}_bytes"] += size
    total = Path(path).stat().st_size
    weights = sum(int(e["rows"]) * int(e["K"]) for e in header["layers"])
    itemsize = torch.empty(0, dtype=DTYPES[header["dtype"]]).element_size()
    return {**parts, "header_bytes": total - sum(parts.values()), "total_bytes": total,
            "dense_bytes": weights * itemsize, "dense_fp32_bytes": weights * 4}
