"""Workload lowering: every Conv2d / Linear of a network as a GEMM, in execution order.

A layer computes ``O[P, N] = A[P, K] x W^T[K, N]``, repeated ``groups`` times, with
``P = batch * H_out * W_out`` output pixels, ``K = (C_in / groups) * kh * kw`` and
``N = C_out / groups``. K is ordered as PyTorch flattens a conv weight, ``(C_in/groups, kh, kw)``
with kw fastest, so the pruner's N:M groups and blocks line up with the array's rows. A Linear on
``[..., in_features]`` has ``P`` = the product of its leading dims, ``K = in``, ``N = out``.

Layers are found by running the network once with forward hooks, so residual and branching networks
lower correctly, and a module called twice appears twice (``name#1``).

SCALE-Sim topology CSV files are read too (:func:`read_topology_csv`): conv rows are lowered as
SCALE-Sim lowers them (no padding, ``E = ceil((H - F + s) / s)`` per axis) and GEMM rows
(``Layer, M, N, K``) as ``P=M, K=K, N=N``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from crisp.errors import UserError

KINDS = ("conv", "depthwise", "linear")


@dataclass(frozen=True)
class GemmLayer:
    """One GEMM-shaped layer of a network.

    Attributes:
        name: dotted module name (``layer1.0.conv1``), or the topology file's layer name.
        kind: ``conv``, ``depthwise`` (groups == C_in > 1) or ``linear``.
        P: output pixels per group (rows of A and O), ``batch * H_out * W_out``.
        K: reduction length per group, ``(C_in / groups) * kh * kw``.
        N: output channels per group, ``C_out / groups``.
        groups: independent GEMMs of this shape (conv groups; 1 for dense layers).
        kernel: (kh, kw); (1, 1) for linear layers.
        stride: (sh, sw).
        padding: (ph, pw).
        in_shape: input activation shape, batch first.
        out_shape: output activation shape, batch first.
        weight: the module's weight as a float32 ``[groups * N, K]`` matrix in K order, or None
            (topology files). Not part of equality or the repr.
    """

    name: str
    kind: str
    P: int
    K: int
    N: int
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    weight: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"layer {self.name}: unknown kind {self.kind!r}: allowed {KINDS}")
        for dim in ("P", "K", "N", "groups"):
            if getattr(self, dim) < 1:
                raise UserError(f"layer {self.name}: {dim}={getattr(self, dim)} must be >= 1")
        if self.weight is not None and self.weight.shape != (self.groups * self.N, self.K):
            raise UserError(
                f"layer {self.name}: weight shape {self.weight.shape} is not "
                f"(groups*N, K) = ({self.groups * self.N}, {self.K})"
            )

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the dense layer: ``P * K * N * groups``."""
        return self.P * self.K * self.N * self.groups

    def as_row(self) -> dict[str, object]:
        """The layer's shape as a flat dict for a table (no weight)."""
        return {
            "layer": self.name,
            "kind": self.kind,
            "P": self.P,
            "K": self.K,
            "N": self.N,
            "groups": self.groups,
            "kernel": "x".join(map(str, self.kernel)),
            "stride": "x".join(map(str, self.stride)),
            "padding": "x".join(map(str, self.padding)),
            "in_shape": "x".join(map(str, self.in_shape)),
            "out_shape": "x".join(map(str, self.out_shape)),
            "macs": self.macs,
        }


def layers_frame(layers: list[GemmLayer]) -> pd.DataFrame:
    """One row per layer: name, kind, P, K, N, groups, kernel, stride, padding, shapes, macs."""
    return pd.DataFrame([layer.as_row() for layer in layers])


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv_layer(name: str, conv: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> GemmLayer:
    kh, kw = conv.kernel_size
    g = conv.groups
    weight = conv.weight.detach().to(torch.float32).reshape(conv.out_channels, -1).cpu().numpy()
    return GemmLayer(
        name=name,
        kind="depthwise" if g > 1 and g == conv.in_channels else "conv",
        P=y.shape[0] * y.shape[2] * y.shape[3],
        K=(conv.in_channels // g) * kh * kw,
        N=conv.out_channels // g,
        groups=g,
        kernel=(kh, kw),
        stride=_pair(conv.stride),
        padding=_pair(conv.padding) if not isinstance(conv.padding, str) else (kh // 2, kw // 2),
        in_shape=tuple(x.shape),
        out_shape=tuple(y.shape),
        weight=weight,
    )


def _linear_layer(name: str, lin: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> GemmLayer:
    return GemmLayer(
        name=name,
        kind="linear",
        P=int(np.prod(x.shape[:-1])),
        K=lin.in_features,
        N=lin.out_features,
        in_shape=tuple(x.shape),
        out_shape=tuple(y.shape),
        weight=lin.weight.detach().to(torch.float32).cpu().numpy(),
    )


def lower_model(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1) -> list[GemmLayer]:
    """Trace ``model`` on one zero input and return its GEMM layers in execution order.

    Args:
        model: any network; its Conv2d and Linear modules (and subclasses, e.g. parametrized or
            pruned ones) are lowered, every other module only passes activations on.
        input_shape: (channels, height, width) of one sample, without the batch.
        batch: samples per inference; P scales with it.

    Raises:
        UserError: a Conv1d/Conv3d/ConvTranspose layer (not a GEMM this lowering maps) or a
            network with no Conv2d/Linear layer.
    """
    found: list[GemmLayer] = []
    calls: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def record(
            module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
        ) -> None:
            count = calls.get(name, 0)
            calls[name] = count + 1
            label = name if count == 0 else f"{name}#{count}"
            make = _conv_layer if isinstance(module, nn.Conv2d) else _linear_layer
            found.append(make(label, module, inputs[0], output))

        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d)):
            raise UserError(
                f"layer {name}: {type(module).__name__} is not supported: allowed Conv2d, Linear"
            )
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros((batch, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not found:
        raise UserError(f"{type(model).__name__} has no Conv2d or Linear layer to simulate")
    return found


_CONV_FIELDS = (
    "ifmap height",
    "ifmap width",
    "filter height",
    "filter width",
    "channels",
    "num filter",
    "strides",
)
_GEMM_FIELDS = ("m", "n", "k")


def _positive_int(path: Path, line: int, field_name: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise UserError(
            f"{path}:{line}: field {field_name!r} = {text.strip()!r} is not an integer"
        ) from None
    if value < 1:
        raise UserError(f"{path}:{line}: field {field_name!r} = {value} must be >= 1")
    return value


def read_topology_csv(path: str | Path) -> list[GemmLayer]:
    """Read a SCALE-Sim topology CSV (conv rows or ``Layer, M, N, K`` GEMM rows).

    The header decides the format. Conv rows lower without padding, as SCALE-Sim does; a layer
    whose name contains ``DP`` is taken as depthwise (SCALE-Sim's convention), its channels becoming
    groups of one. Extra columns (SCALE-Sim v3's sparsity column) are ignored.

    Raises:
        UserError: a missing file, an unknown header, or a bad row (names file, line and field).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"topology file {path} does not exist")
    with path.open(newline="") as handle:
        rows = [
            (i, r) for i, r in enumerate(csv.reader(handle), start=1) if any(c.strip() for c in r)
        ]
    if not rows:
        raise UserError(f"{path}: empty topology file")
    header = [c.strip().lower() for c in rows[0][1] if c.strip()]
    gemm = header[1:4] == list(_GEMM_FIELDS)
    if not gemm and tuple(header[1:8]) != _CONV_FIELDS:
        raise UserError(
            f"{path}:1: unknown header {header}: expected 'Layer name, IFMAP Height, IFMAP Width, "
            "Filter Height, Filter Width, Channels, Num Filter, Strides' or 'Layer, M, N, K'"
        )
    fields = _GEMM_FIELDS if gemm else _CONV_FIELDS
    layers = []
    for line, row in rows[1:]:
        if len(row) < len(fields) + 1:
            raise UserError(f"{path}:{line}: {len(row)} fields, expected {len(fields) + 1}")
        name = row[0].strip()
        v = [_positive_int(path, line, f, t) for f, t in zip(fields, row[1:], strict=False)]
        if gemm:
            m, n, k = v
            layers.append(
                GemmLayer(name, "linear", P=m, K=k, N=n, in_shape=(m, k), out_shape=(m, n))
            )
            continue
        h, w, fh, fw, c, nf, s = v
        if fh > h or fw > w:
            raise UserError(f"{path}:{line}: filter {fh}x{fw} larger than ifmap {h}x{w}")
        eh, ew = math.ceil((h - fh + s) / s), math.ceil((w - fw + s) / s)
        depthwise = "DP" in name and c > 1
        groups = c if depthwise else 1
        layers.append(
            GemmLayer(
                name,
                "depthwise" if depthwise else "conv",
                P=eh * ew,
                K=(c // groups) * fh * fw,
                N=max(nf // groups, 1),
                groups=groups,
                kernel=(fh, fw),
                stride=(s, s),
                in_shape=(1, c, h, w),
                out_shape=(1, nf, eh, ew),
            )
        )
    return layers


def write_topology_csv(layers: list[GemmLayer], path: str | Path) -> None:
    """Write layers as a SCALE-Sim GEMM topology (``Layer, M, N, K,``), one row per group.

    SCALE-Sim has no groups, so a grouped layer becomes ``groups`` rows named ``name/g<i>``.
    """
    lines = ["Layer, M, N, K,"]
    for layer in layers:
        names = (
            [layer.name]
            if layer.groups == 1
            else [f"{layer.name}/g{i}" for i in range(layer.groups)]
        )
        lines += [f"{n}, {layer.P}, {layer.N}, {layer.K}," for n in names]
    Path(path).write_text("\n".join(lines) + "\n")
