"""Workload lowering: every GEMM of a network (convolutions, linear layers, matmuls of two
activations such as attention), in execution order.

A layer computes ``O[P, N] = A[P, K] x W^T[K, N]``, repeated ``groups`` times, with
``P = batch * H_out * W_out`` output pixels, ``K = (C_in / groups) * kh * kw`` and
``N = C_out / groups``. K is ordered as PyTorch flattens a conv weight, ``(C_in/groups, kh, kw)``
with kw fastest, so the pruner's N:M groups and blocks line up with the array's rows. A Linear on
``[..., in_features]`` has ``P`` = the product of its leading dims, ``K = in``, ``N = out``. A
``matmul`` of two activations ``[..., M, K] x [..., K, N]`` has ``P = M`` and ``groups`` = the
product of the batch dims (for attention: batch x heads).

Networks are lowered by `accel_sim.lowering.lower_model` (graph capture with ``torch.export``,
`crisp.graph_gemms`; the only simulator module that imports torch). SCALE-Sim topology CSV
files are read here (`read_topology`): conv rows are lowered as SCALE-Sim lowers them (no
padding, ``E = ceil((H - F + s) / s)`` per axis) and GEMM rows (``Layer, M, N, K``) as
``P=M, K=K, N=N``; SCALE-Sim v3's per-layer ``Sparsity`` column (``N:M``) is read too.

**Size limit.** Every layer must have at most `MAX_MACS` = 2**44 dense MACs
(``P * K * N * groups``); bigger layers are refused with a UserError rather than simulated with
counts that wrap around (see `GemmLayer`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crisp.errors import UserError
from crisp.io import read_text
from crisp.pattern_core import check_nm

if TYPE_CHECKING:
    import pandas as pd

KINDS = ("conv", "depthwise", "linear", "matmul")
MAX_MACS = 2**44
"""Largest dense MAC count of one layer (``P * K * N * groups``), about 1.8e13.

Chosen so that every count the engine makes stays below 2**62 (int64 holds 2**63 - 1), with
margin, for arrays of up to `MAX_ARRAY_SIDE` rows and columns: a fold of r <= R rows,
c <= C columns and T streaming steps counts at most ``r * c * T`` MAC slots and a small multiple
of that in register accesses, SRAM words and bytes (at most 16 input words per slot with N:M
multiplexers, 4 bytes per word, psums at 32 bits), so every action count is below
``64 * MAX_MACS = 2**50``; cycles are at most ``folds * (T + fill + edge stall)`` with
``folds <= groups * Sr * Sc`` (the two spatial dimensions), ``fill <= 2R + C`` and edge stalls
below ``16 T``, so below ``MAX_MACS * (17 + 3 * MAX_ARRAY_SIDE) < 2**62``. DRAM stall cycles
(bytes / bandwidth) and a network's sums depend on the hardware too:
`accel_sim.simulate.check_count_bound` refuses, before simulating, a network and array whose
counts could pass 2**62 (a narrow input edge, a starved DRAM, many huge layers). Layers of
real networks are far below the limit (ResNet-50's largest has 1.2e8 MACs, a 16k x 16k GEMM over
8k tokens 2.2e12).
"""
MAX_ARRAY_SIDE = 2**16
"""Largest array side (rows or columns) for which `MAX_MACS` guarantees no overflow."""


@dataclass(frozen=True)
class GemmLayer:
    """One GEMM-shaped layer of a network.

    Attributes:
        name: dotted module name (``layer1.0.conv1``), or the topology file's layer name.
        kind: ``conv``, ``depthwise`` (groups == C_in > 1), ``linear`` (a weight matrix) or
            ``matmul``: a GEMM of two activations (attention's ``Q K^T`` and ``softmax(.) V``,
            ``torch.matmul``/``einsum`` of two activations). A matmul has no weights (``weight``
            is None, nothing to prune: every scheme leaves it dense); its B operand, the one
            the array holds stationary under WS, is an activation of the same word width,
            fetched from DRAM like a weight; ``groups`` counts its batch x heads GEMMs.
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

    Raises:
        UserError: an unknown kind, a dimension below 1, a weight of the wrong shape, or more
            than `MAX_MACS` dense MACs (the counts of such a layer could overflow int64:
            refused, never printed wrong). ``dataclasses.replace`` checks again, so a batch that
            scales P past the limit is refused too.
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
        if self.macs > MAX_MACS:  # Python ints: exact, whatever the size
            raise UserError(
                f"layer {self.name}: P*K*N*groups = {self.P}*{self.K}*{self.N}*{self.groups} = "
                f"{self.macs:.3e} MACs is above the limit of {MAX_MACS:.3e} (2**44), beyond which "
                "the simulator's 64-bit counts could overflow"
            )
        if self.kind == "matmul" and self.weight is not None:
            raise UserError(f"layer {self.name}: a matmul (two activations) has no weight")
        if self.weight is not None and self.weight.shape != (self.groups * self.N, self.K):
            raise UserError(
                f"layer {self.name}: weight shape {self.weight.shape} is not "
                f"(groups*N, K) = ({self.groups * self.N}, {self.K})"
            )

    @property
    def shape_key(self) -> tuple:
        """Every field but the name and the weight, in field order: what a simulation without a
        mask depends on (the mapper's memo key)."""
        return tuple(getattr(self, name) for name in _SHAPE_FIELDS)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the dense layer: ``P * K * N * groups`` (a Python int)."""
        return int(self.P) * int(self.K) * int(self.N) * int(self.groups)

    def batched(self, batch: int) -> GemmLayer:
        """This layer for ``batch`` times its samples: ``P`` times ``batch`` (more rows), or for
        a ``matmul`` ``groups`` times ``batch`` (each sample multiplies its own operands); the
        leading dim of its shapes times ``batch``.

        Raises:
            UserError: more than `MAX_MACS` MACs at that batch.
        """
        if batch == 1:
            return self

        def shape(dims: tuple[int, ...]) -> tuple[int, ...]:
            return (dims[0] * batch, *dims[1:]) if dims else dims

        more = {"groups": self.groups * batch} if self.kind == "matmul" else {"P": self.P * batch}
        return replace(self, **more, in_shape=shape(self.in_shape),
                       out_shape=shape(self.out_shape))

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


_SHAPE_FIELDS = tuple(f.name for f in dataclass_fields(GemmLayer)
                      if f.name not in ("name", "weight"))


def layers_frame(layers: list[GemmLayer]) -> pd.DataFrame:
    """One row per layer: name, kind, P, K, N, groups, kernel, stride, padding, shapes, macs."""
    import pandas as pd  # only tables need pandas; reading and simulating layers do not

    return pd.DataFrame([layer.as_row() for layer in layers])


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


_NM_TEXT = re.compile(r"(\d+)\s*:\s*(\d+)")


def _parse_sparsity(path: Path, line: int, name: str, text: str) -> tuple[int, int] | None:
    """A topology row's ``Sparsity`` cell: ``(N, M)``, or None for dense (empty, ``1:1``, N = M).

    Raises:
        UserError: not ``N:M`` with integers ``1 <= N <= M``, or an N < M pattern other than those
            of `crisp.pattern_core.check_nm` (M in 2, 4, 8, 16).
    """
    text = text.strip()
    where = f"{path}:{line}: layer {name}: Sparsity {text!r}"
    if not text:
        return None
    match = _NM_TEXT.fullmatch(text)
    if match is None:
        raise UserError(f"{where} is not N:M with integers 1 <= N <= M (e.g. 2:4; 1:1 = dense)")
    n, m = int(match[1]), int(match[2])
    if not 1 <= n <= m:
        raise UserError(f"{where}: need 1 <= N <= M (N:M keeps N of every M weights)")
    if n == m:
        return None
    try:
        check_nm(n, m)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    return n, m


def read_topology(path: str | Path) -> tuple[list[GemmLayer], dict[str, tuple[int, int]]]:
    """Read a SCALE-Sim topology CSV: its layers and the N:M of its sparse layers.

    The header decides the format: conv rows (``Layer name, IFMAP Height, IFMAP Width, Filter
    Height, Filter Width, Channels, Num Filter, Strides``) or GEMM rows (``Layer, M, N, K``). Conv
    rows lower without padding, as SCALE-Sim does; a layer whose name contains ``DP`` is taken as
    depthwise (SCALE-Sim's convention), its channels becoming groups of one. A name that occurs
    again becomes ``name#1``, ``name#2``, ... (as repeated modules do), so every layer has its
    own name.

    **Sparsity** (SCALE-Sim v3): a header column named ``Sparsity`` after the shape columns (the
    fifth of ``Layer, M, N, K, Sparsity,``, the ninth of the conv form) gives each layer's
    ``N:M``: N kept weights in every M consecutive ones along K. ``1:1``, any ``N:N`` and an empty
    or missing cell mean dense (SCALE-Sim's default); a sparse entry must be one of the patterns
    the simulator models (M in 2, 4, 8, 16, ``1 <= N < M``; SCALE-Sim's row-wise mode itself
    asks for N <= M/2). Other extra columns are ignored.

    Returns:
        (layers in file order, ``(N, M)`` by layer name for the layers with a sparse entry).

    Raises:
        UserError: a missing file, an unknown header, a bad row (names file, line and field), a
            Sparsity entry that is not ``N:M`` with ``1 <= N <= M``, or a layer above
            `MAX_MACS`.
    """
    path = Path(path)
    text = read_text(path, "topology file")
    try:
        rows = [(i, r) for i, r in enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
                if any(c.strip() for c in r)]
    except csv.Error as err:
        raise UserError(f"{path}: not a readable CSV file: {err}") from None
    if not rows:
        raise UserError(f"{path}: empty topology file")
    raw_header = [c.strip().lower() for c in rows[0][1]]
    header = [c for c in raw_header if c]
    gemm = header[1:4] == list(_GEMM_FIELDS)
    if not gemm and tuple(header[1:8]) != _CONV_FIELDS:
        raise UserError(
            f"{path}:1: unknown header {header}: expected 'Layer name, IFMAP Height, IFMAP Width, "
            "Filter Height, Filter Width, Channels, Num Filter, Strides' or 'Layer, M, N, K' "
            "(each optionally followed by 'Sparsity')"
        )
    fields = _GEMM_FIELDS if gemm else _CONV_FIELDS
    extra = raw_header[len(fields) + 1:]
    sparsity_col = len(fields) + 1 + extra.index("sparsity") if "sparsity" in extra else None
    layers: list[GemmLayer] = []
    nm: dict[str, tuple[int, int]] = {}
    seen: dict[str, int] = {}
    for line, row in rows[1:]:
        if len(row) < len(fields) + 1:
            raise UserError(f"{path}:{line}: {len(row)} fields, expected {len(fields) + 1}")
        name = row[0].strip()
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique = name if count == 0 else f"{name}#{count}"
        v = [_positive_int(path, line, f, t) for f, t in zip(fields, row[1:], strict=False)]
        try:
            layers.append(_topology_layer(unique, v, gemm))
        except UserError as err:
            raise UserError(f"{path}:{line}: {err}") from None
        if sparsity_col is not None and sparsity_col < len(row):
            pattern = _parse_sparsity(path, line, name, row[sparsity_col])
            if pattern is not None:
                nm[unique] = pattern
    return layers, nm


def read_topology_csv(path: str | Path) -> list[GemmLayer]:
    """The layers of a SCALE-Sim topology CSV (`read_topology` without the sparsity)."""
    return read_topology(path)[0]


def _topology_layer(name: str, v: list[int], gemm: bool) -> GemmLayer:
    """One topology row's layer from its integer fields (GEMM ``M, N, K`` or the conv seven)."""
    if gemm:
        m, n, k = v
        return GemmLayer(name, "linear", P=m, K=k, N=n, in_shape=(m, k), out_shape=(m, n))
    h, w, fh, fw, c, nf, s = v
    if fh > h or fw > w:
        raise UserError(f"filter {fh}x{fw} larger than ifmap {h}x{w}")
    eh, ew = math.ceil((h - fh + s) / s), math.ceil((w - fw + s) / s)
    depthwise = "DP" in name and c > 1
    groups = c if depthwise else 1
    return GemmLayer(
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
