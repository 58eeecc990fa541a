"""The compressed model format's writer and its torch views.

The format (a ``.safetensors`` file with a JSON header: K order, N:M slots, offsets, block
bitmaps, GEMM geometry) is defined once, with its torch-free reader, in
`crisp.compressed_format`; the names of that reader (`read_layers`,
`read_header`, `size_breakdown`, `StoredLayer`, `FORMAT`, ...) are
re-exported here. This module adds what needs torch: `save` (from a ``nn.Module`` and
its masks), `read_weights` and `read_state_dict` (torch tensors to rebuild a model).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as serialize
from torch import nn

from crisp import compressed_format as fmt
from crisp.compressed_format import (
    FORMAT,
    K_ORDER,
    LAYER_SCHEMES,
    VERSION,
    StoredLayer,
    read_header,
    read_layers,
    size_breakdown,
)
from crisp.errors import UserError
from crisp.io import write_atomic
from crisp.lowering import trace_gemms
from crisp.masks import gemm_layers, weight_matrix
from crisp.patterns import bitmap_of, check_block, check_nm, expand_blocks

__all__ = [
    "DTYPES", "FORMAT", "K_ORDER", "LAYER_SCHEMES", "VERSION", "StoredLayer", "decode_nm",
    "encode_nm", "read_header", "read_layers", "read_state_dict", "read_weights", "save",
    "size_breakdown",
]

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_GEOMETRY = fmt.GEOMETRY


# ---------------------------------------------------------------------------------------------
# Encoding helpers (pure)
# ---------------------------------------------------------------------------------------------


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
    valid = torch.arange(m)[None, :] < torch.as_tensor(fmt.group_lengths(k, m)[1])[:, None]
    # Kept positions first, then unkept valid ones, each by position; padding never.
    key = mask_g.to(torch.int64) * 2 * m + valid.to(torch.int64)[None] * m - torch.arange(m)
    key = key.masked_fill(~valid[None], -4 * m)
    chosen = torch.sort(key.topk(n, dim=2).indices, dim=2).values  # [rows, groups, n]
    layout = torch.from_numpy(fmt.slot_layout(region, k, n, m))
    w_g = torch.nn.functional.pad(weight, (0, pad)).reshape(rows, -1, m)
    values = torch.gather(w_g, 2, chosen)[layout]
    return values, chosen[layout].numpy().astype(np.uint8)


def decode_nm(
    values: torch.Tensor, offsets: np.ndarray, region: np.ndarray, k: int, n: int, m: int
) -> torch.Tensor:
    """Inverse of `encode_nm`: the ``[rows, K]`` weight (zeros outside the slots).

    A torch view of `crisp.compressed_format.decode_nm`, in ``values``' dtype.
    """
    array = values.float().numpy() if values.dtype == torch.bfloat16 else values.numpy()
    return torch.from_numpy(fmt.decode_nm(array, offsets, region, k, n, m)).to(values.dtype)


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------


def _encode_layer(
    name: str, weight: torch.Tensor, mask: torch.Tensor, scheme: str, n: int, m: int, b: int
) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Tensors and header fields (``counts``, ``blocks_per_row``) of one ``[rows, K]`` layer
    (``weight`` already in the stored dtype)."""
    rows, k = weight.shape
    weight = torch.where(mask, weight, 0.0)  # masked entries +0.0 exactly (never -0.0)
    if scheme == "dense":
        return {"weight": weight.reshape(-1)}, {"counts": {"values": weight.numel()}}
    if scheme == "unstructured":
        bits = mask.numpy()
        return ({"values": weight[mask], "bitmap": torch.from_numpy(fmt.pack_bits(bits))},
                {"counts": {"values": int(mask.sum()), "bitmap_bits": bits.size}})
    tensors: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    fields: dict[str, object] = {"counts": counts}
    region = np.ones((rows, k), dtype=bool)
    if scheme in ("hybrid", "block"):
        bitmap = bitmap_of(mask, b)
        region = expand_blocks(bitmap, b, (rows, k)).numpy()
        tensors["bitmap"] = torch.from_numpy(fmt.pack_bits(bitmap.numpy()))
        counts["bitmap_bits"] = bitmap.numel()
        per_row = bitmap.sum(dim=1).unique()
        fields["blocks_per_row"] = int(per_row[0]) if per_row.numel() == 1 else None
    if scheme == "block":
        tensors["values"] = weight[torch.from_numpy(region)]
        counts["values"] = int(region.sum())
        return tensors, fields
    values, offsets = encode_nm(weight, mask, region, n, m, name)
    tensors["values"] = values
    tensors["offsets"] = torch.from_numpy(fmt.pack_offsets(offsets, m))
    counts.update(values=values.numel(), offsets=offsets.size)
    return tensors, fields


def _geometry(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict[str, object]]:
    """Every GEMM's geometry by name, in execution order (`crisp.lowering.trace_gemms`)."""
    return {
        g["name"]: {f: list(g[f]) if isinstance(g[f], tuple) else g[f] for f in _GEOMETRY}
        for g in trace_gemms(model, input_shape, weights=False)
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
    """Write ``model`` (plain or squashed weights) in the compressed format, atomically, with
    the header's ``checksum`` (`crisp.compressed_format.checksum_of`).

    Args:
        model: the pruned model.
        path: the ``.safetensors`` file to write.
        masks: bool masks by dotted weight name (``<module>.weight``); a layer without one uses
            its non-zero entries.
        patterns: scheme of each layer by module name (`LAYER_SCHEMES`); missing = dense.
        n: N of the N:M pattern.
        m: M of the N:M pattern.
        b: the block size (B a multiple of M for hybrid layers).
        input_shape: (C, H, W) of one input sample, for the GEMM geometry.
        dtype: stored value dtype, one of `DTYPES`.
        meta: JSON-ready extra header fields (model name, classes, ...).

    Returns:
        `size_breakdown` of the written file.
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
        parts, fields = _encode_layer(name, w, mask, scheme, n, m, b)
        tensors.update({f"{name}.{part}": t.contiguous() for part, t in parts.items()})
        gemm_keys.add(f"{name}.weight")
        layers.append({"name": name, "scheme": scheme, "shape": list(module.weight.shape),
                       "rows": w.shape[0], "K": w.shape[1], "n": n, "m": m, "b": b,
                       **fields, "geometry": geometry.get(name)})
    for key, value in model.state_dict().items():
        if key not in gemm_keys:
            tensors[f"state.{key}"] = value.detach().contiguous()
    order = list(geometry)
    layers.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else len(order))
    stored = {e["name"] for e in layers}
    dense_gemms = [{"name": name, "index": i, "geometry": g}
                   for i, (name, g) in enumerate(geometry.items()) if name not in stored]
    header = {"format": FORMAT, "version": VERSION, "dtype": dtype, "k_order": K_ORDER,
              "meta": {**(meta or {}), "input_shape": list(input_shape)}, "layers": layers,
              "dense_gemms": dense_gemms}
    header["checksum"] = fmt.checksum_of(serialize(tensors, {"crisp": json.dumps(header)}))
    write_atomic(Path(path),
                 lambda tmp: tmp.write_bytes(serialize(tensors, {"crisp": json.dumps(header)})))
    return size_breakdown(path)


# ---------------------------------------------------------------------------------------------
# Torch views of the reader (crisp.compressed_format)
# ---------------------------------------------------------------------------------------------


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every GEMM layer's masked weight, in its own shape and the stored dtype, by weight name."""
    handle = fmt.open_file(path)
    dtype = DTYPES[handle.header["dtype"]]
    return {
        f"{e['name']}.weight": torch.from_numpy(handle.layer_weight(e)).to(dtype).reshape(
            e["shape"])
        for e in handle.header["layers"]
    }


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The full state dict (GEMM weights as float32 plus the stored biases / BatchNorm tensors)."""
    weights = read_weights(path)  # validates the file
    with safe_open(str(path), framework="pt") as handle:
        state = {key.removeprefix("state."): handle.get_tensor(key)
                 for key in handle.keys() if key.startswith("state.")}  # noqa: SIM118
    state.update({k: v.float() for k, v in weights.items()})
    return state
