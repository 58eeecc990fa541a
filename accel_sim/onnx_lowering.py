"""Lowering an ONNX model to GEMM layers, with the ``onnx`` package only (no torch).

`lower_onnx` reads a ``.onnx`` file, fixes its input shapes (``--input-shape``), runs
``onnx.shape_inference.infer_shapes`` (with data propagation) and turns every ``Conv``, ``Gemm``
and ``MatMul`` node of the main graph into an `accel_sim.workload.GemmLayer`, in topological
order (the file's own order when it is already topological, as exporters write it: the
execution order). Every other op only passes activations on. The GEMM semantics are those of
`accel_sim.workload` (the torch lowering's):

- ``Conv`` (2-D only): kind ``conv``, or ``depthwise`` when ``group == C_in > 1``;
  ``P = N * H_out * W_out``, ``K = (C_in / group) * kh * kw``, ``N = C_out / group``, ``groups =
  group``; kernel, stride and padding (the ``pads`` begin values; ``auto_pad`` SAME_* gives
  ``k // 2``, VALID 0). The weight is the ``[C_out, C_in/group, kh, kw]`` constant reshaped to
  ``[C_out, K]`` (ONNX's OIHW is PyTorch's flatten order). A 1-D or 3-D conv or a dilation
  other than 1 is refused.
- ``Gemm`` (``A [M, K]``, ``B [K, N]``, ``transA``/``transB`` honoured): kind ``linear`` when B
  is a constant, ``P = M``, weight ``B^T`` as ``[N, K]``; otherwise kind ``matmul`` (a GEMM of
  two activations, no weight), also when only A is a constant (the array then holds an
  activation stationary). A *constant* does not depend on the graph's inputs: an initializer
  (dense or sparse), a ``Constant`` output, or what standard ops compute from constants only
  (the ``Identity`` copies exporters make of shared initializers, a ``Transpose`` or a QDQ
  model's ``DequantizeLinear`` of a weight; evaluated with onnx's reference evaluator).
- ``MatMul`` with numpy's broadcasting, ``A [..., M, K] @ B [..., K, N]`` (a 1-D operand
  promoted as numpy does): when B is a constant whose batch dims are all 1, kind ``linear``
  with ``P = prod(A.shape[:-1])`` and weight ``B^T`` as ``[N, K]`` (a ``Linear`` on a 3-D
  input, exported as ``MatMul`` with a transposed initializer). Otherwise kind ``matmul``: when
  B has batch dims, ``groups`` = the product of the broadcast batch dims and ``P = M``
  (attention's ``Q K^T`` and ``softmax(.) V``: groups = batch x heads); when B has none (a 2-D
  activation shared by every row of A), ``P = prod(A.shape[:-1])`` and ``groups = 1``, as for a
  weight (and as ``torch.matmul`` computes it: one ``mm`` on the flattened rows).
- ``ConvTranspose``, ``Einsum`` and the quantized GEMMs (``QLinearConv``, ``QLinearMatMul``,
  ``ConvInteger``, ``MatMulInteger``) are refused rather than skipped, as are Conv/Gemm/MatMul
  nodes inside a control-flow subgraph (``If``, ``Loop``, ``Scan``) and the ops of other domains
  whose name says Conv, Gemm, MatMul or Attention (a runtime's fused ops, e.g.
  ``com.microsoft`` ``FusedConv``): their MACs would go missing silently. Other ops of other
  domains pass activations on.

Units: P, K, N and groups are element counts; weights are float32 whatever the file stores
(float16, bfloat16, float64 are converted; zeros stay zeros).

**Layer names.** A layer whose weight is an initializer named ``<module>.weight`` is named
``<module>``: what PyTorch's exporter writes for ``Conv`` and ``Gemm``, so names match the
torch lowering (`accel_sim.lowering`) and a pruned model's masks. Otherwise, a node name of
the legacy exporter's scope form ``/layer1/layer1.0/conv1/Conv`` gives its module path
(``layer1.0.conv1``; each ``/``-separated scope adds its last dotted atom, the last part is the
op): the names of convolutions whose BatchNorm the exporter folded in (their weights become
``onnx::Conv_123``) and of ``Linear`` layers on 3-D inputs (``onnx::MatMul_123``); a GEMM of two
activations is ``<module>.matmul`` (``.gemm`` for a Gemm), as the torch lowering names a
``torch.matmul`` of its module. A module that the network calls again keeps the exporter's scope
suffix (``relu_1``). Any other node is named by its ``name``, or ``<op_type>_<index in the
file>`` when it has none. A name that occurs again becomes ``name#1``, ``name#2``, ... (as the
torch lowering names repeated calls).

**Input shapes.** Every graph input (initializers excepted) must have a fixed shape after
``--input-shape``: ``DIMS`` with dims joined by ``x`` (``1x3x224x224``, as the layers table
prints shapes) for a model with one input, or ``NAME=DIMS`` entries separated by commas
(``input_ids=1x128,attention_mask=1x128``) for several; a given shape fills the input's
dynamic dims (its rank must match; every dim a positive integer; a dim the file declares fixed
must keep its size, since a graph exported at a fixed size may hold it elsewhere too, in a
Reshape target or a position embedding). ``batch`` then scales the
lowered layers as for a pruned file (`accel_sim.workload.GemmLayer.batched`): ``P`` of conv
and linear layers (their rows hold the batch) and ``groups`` of matmul layers (each sample has
its own operands) are multiplied by it, and so is the first dim of ``in_shape`` and
``out_shape``.

**Zeros as masks** (`accel_sim.sparsity.weight_sparsity`, ``accel-sim run model.onnx`` without
``--scheme``):
an ONNX file carries no scheme, so each layer's keep-mask is ``weight != 0`` and its scheme is
the most structured pattern those zeros satisfy at the run's N:M (``--nm``) and block size B
(``--block``):

1. ``dense``: no zero weight (and every layer without a weight: the matmul layers);
2. ``hybrid``: every aligned group of M weights along K holds at most N non-zeros, and at least
   one B x B block of the ``[groups*N, K]`` matrix is all zero;
3. ``nm``: the N:M condition alone;
4. ``block``: every zero lies in an all-zero B x B block (the zeros are whole blocks);
5. ``unstructured``: any other zeros.

The descriptors are built as a pruned ``.safetensors`` file's are (`accel_sim.sparsity.from_mask`:
the mask with the scheme's N:M and B); the hardware exploits what its sparse support and the
mask allow. With ``--nm none`` steps 2 and 3 are skipped. A layer whose weight is computed
from the graph's inputs has no weight and is dense.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from accel_sim.workload import GemmLayer
from crisp.errors import UserError, one_line

if TYPE_CHECKING:
    import onnx

GEMM_OPS = ("Conv", "Gemm", "MatMul")
"""The ops lowered to GEMM layers."""
REFUSED_OPS = ("ConvTranspose", "Einsum", "QLinearConv", "QLinearMatMul", "ConvInteger",
               "MatMulInteger")
"""GEMM-like ops this lowering does not map: refused, so their MACs never go missing."""

_GEMM_LIKE = re.compile(r"Conv|Gemm|MatMul|Attention")
InputShape = str | Sequence[int] | Mapping[str, Sequence[int]] | None
"""``--input-shape``: text (``1x3x224x224`` or ``a=1x128,b=1x128``), one shape, or shapes by
input name."""


def lower_onnx(path: str | Path, input_shape: InputShape = None, batch: int = 1,
               weights: bool = True) -> list[GemmLayer]:
    """The GEMM layers of the ONNX model at ``path``, in execution order (see the module
    docstring for the rules).

    Args:
        input_shape: fixes the graph inputs' shapes (needed for dynamic or symbolic dims).
        batch: samples per inference (scales the layers: see the module docstring).
        weights: False = shapes only (no weight arrays are converted).

    Raises:
        UserError: naming the file (and the node where one is at fault): not an ONNX model,
            dynamic input dims without ``input_shape``, a bad ``input_shape``, a Conv/Gemm/MatMul
            that shape inference could not size, an unsupported conv (1-D, 3-D, dilated) or a
            refused op, a model without any Conv/Gemm/MatMul node, or a layer above
            `accel_sim.workload.MAX_MACS`.
    """
    path = Path(path)
    model = _load(path)
    _fix_inputs(model, path, input_shape)
    _densify(model.graph)
    labels = _sort(model.graph, path)
    graph = _infer(model, path).graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    consts = _Constants(graph, opset)
    shapes = _shapes(graph)
    layers: list[GemmLayer] = []
    seen: dict[str, int] = {}
    for node, label in zip(graph.node, labels, strict=True):
        _check_subgraphs(node, path, label)
        if node.domain not in ("", "ai.onnx"):
            if _GEMM_LIKE.search(node.op_type):  # a runtime's fused GEMM: refused, not skipped
                raise UserError(f"{path}: node {label} ({node.domain} {node.op_type}) is an op "
                                f"of domain {node.domain} this lowering does not map: allowed "
                                f"the standard {', '.join(GEMM_OPS)} (export the model "
                                "without a runtime's graph optimizations)")
            continue
        if node.op_type in REFUSED_OPS:
            raise UserError(f"{path}: node {label} ({node.op_type}) is a GEMM this lowering does "
                            f"not map: allowed {', '.join(GEMM_OPS)}")
        if node.op_type not in GEMM_OPS:
            continue
        ctx = _NodeContext(node, label, shapes, consts, weights)
        try:
            fields = _LOWER[node.op_type](ctx)
        except UserError as err:
            raise UserError(f"{path}: node {label} ({node.op_type}): {err}") from None
        name = _layer_name(node, label, fields.pop("weight_name"), fields["kind"])
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique = name if count == 0 else f"{name}#{count}"
        try:
            layer = GemmLayer(name=unique, **fields).batched(batch)
        except UserError as err:
            raise UserError(f"{path}: node {label}: {err}") from None
        layers.append(layer)
    if not layers:
        raise UserError(f"{path}: no {', '.join(GEMM_OPS)} node to simulate")
    return layers


def parse_input_shape(text: str) -> dict[str | None, tuple[int, ...]]:
    """``--input-shape`` text -> shapes by input name (None: the model's only input).

    ``1x3x224x224`` or ``NAME=DIMS`` entries separated by commas.

    Raises:
        UserError: an entry that is not ``[NAME=]D1xD2x...`` with positive integer dims, or a
            name given twice.
    """
    shapes: dict[str | None, tuple[int, ...]] = {}
    entries = [e.strip() for e in str(text).split(",")]
    for entry in entries:
        name, eq, dims = entry.rpartition("=")
        key = name.strip() if eq else None
        if eq and not key:
            raise UserError(f"--input-shape {text!r}: entry {entry!r} has no input name before '='")
        if len(entries) > 1 and key is None:
            raise UserError(f"--input-shape {text!r}: dims are joined by 'x' (1x3x224x224); "
                            "several inputs are NAME=DIMS entries separated by commas")
        if key in shapes:
            raise UserError(f"--input-shape {text!r}: input {key!r} is given twice")
        shapes[key] = _dims(text, dims)
    return shapes


def _dims(text: str, dims: str) -> tuple[int, ...]:
    parts = [p.strip() for p in dims.lower().split("x")]
    if not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
        raise UserError(f"--input-shape {text!r}: {dims.strip()!r} is not dims joined by 'x' "
                        "(e.g. 1x3x224x224)")
    values = tuple(int(p) for p in parts)
    if any(v < 1 for v in values):
        raise UserError(f"--input-shape {text!r}: every dim must be a positive integer")
    return values


def _normalize_shapes(input_shape: InputShape) -> dict[str | None, tuple[int, ...]]:
    """``input_shape`` in any of its forms as shapes by input name (None: the only input)."""
    if input_shape is None:
        return {}
    if isinstance(input_shape, str):
        return parse_input_shape(input_shape)
    items = (dict(input_shape) if isinstance(input_shape, Mapping)
             else {None: input_shape})
    return {key: _dims(str(input_shape), "x".join(str(d) for d in dims))
            for key, dims in items.items()}


def _load(path: Path) -> onnx.ModelProto:
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise UserError(f"ONNX model {path} does not exist or is not a file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise UserError(f"{path} is not an ONNX model: {one_line(str(err)) or type(err).__name__}"
                        ) from None
    if model.ir_version < 1 or not model.HasField("graph") or not model.graph.node:
        raise UserError(f"{path} is not an ONNX model (no graph with nodes)")
    return model


def _shape_of(value: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    """A value's dims (None for a dynamic or symbolic one), or None when its rank is unknown."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type" or not value.type.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in value.type.tensor_type.shape.dim)


def _text(shape: Sequence[int | None] | None) -> str:
    if shape is None:
        return "unknown rank"
    return "x".join("?" if d is None else str(d) for d in shape) if shape else "scalar"


def _fix_inputs(model: onnx.ModelProto, path: Path, input_shape: InputShape) -> None:
    """Set the graph inputs' shapes from ``input_shape``; refuse a dynamic one left over."""
    graph = model.graph
    init = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in init]
    names = [v.name for v in inputs]
    given = _normalize_shapes(input_shape)
    if None in given:
        if len(inputs) != 1:
            raise UserError(f"{path} has {len(inputs)} inputs ({', '.join(names)}): give "
                            "--input-shape as NAME=DIMS entries separated by commas")
        given = {names[0]: given[None]}
    unknown = [n for n in given if n not in names]
    if unknown:
        raise UserError(f"--input-shape: {path} has no input {unknown[0]!r}: its inputs are "
                        f"{', '.join(names)}")
    for value in inputs:
        declared = _shape_of(value)
        if value.name in given:
            dims = given[value.name]
            if declared is not None and len(declared) != len(dims):
                raise UserError(f"--input-shape {_text(dims)}: input {value.name!r} of {path} "
                                f"has rank {len(declared)} ({_text(declared)}), not {len(dims)}")
            fixed = [i for i, d in enumerate(declared or ()) if d is not None and d != dims[i]]
            if fixed:  # the graph may hold that size elsewhere (Reshape targets, embeddings)
                raise UserError(
                    f"--input-shape {_text(dims)}: input {value.name!r} of {path} was exported "
                    f"at {_text(declared)}, whose dim {fixed[0]} is fixed: --input-shape sets "
                    "dynamic dims only; give --batch for more samples, or export the model at "
                    "the shape you want")
            shape = value.type.tensor_type.shape
            shape.ClearField("dim")
            for d in dims:
                shape.dim.add().dim_value = d
        elif declared is None or None in declared:
            example = "x".join(str(d or 1) for d in declared or (1, 3, 224, 224))
            raise UserError(f"{path}: input {value.name!r} has dynamic dims ({_text(declared)}): "
                            f"give --input-shape with every dim (e.g. {example})")
    if given:  # shapes written for other inputs must not clash with the new ones
        del graph.value_info[:]
        for out in graph.output:
            if out.type.WhichOneof("value") == "tensor_type":
                out.type.tensor_type.ClearField("shape")


def _infer(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as err:  # onnx raises InferenceError, ValidationError, RuntimeError, ...
        raise UserError(f"{path}: shape inference failed: {one_line(str(err))}") from None


def _shapes(graph: onnx.GraphProto) -> dict[str, tuple[int | None, ...] | None]:
    shapes: dict[str, tuple[int | None, ...] | None] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        shape = _shape_of(value)
        if shape is not None or value.name not in shapes:
            shapes[value.name] = shape
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
    return shapes


_RANDOM = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
           "Multinomial", "Bernoulli")


class _Constants:
    """The values that do not depend on the graph's inputs: initializers (sparse ones made
    dense by `_densify`), ``Constant`` outputs, and what standard ops compute from those only
    (``Identity`` copies of shared initializers, a ``Transpose`` or ``DequantizeLinear`` of a
    weight, ...). Arrays are made on first use; a computed one by onnx's reference evaluator,
    one node at a time."""

    def __init__(self, graph: onnx.GraphProto, opset: int) -> None:
        self._tensors = {t.name: t for t in graph.initializer}
        self._producer: dict[str, onnx.NodeProto] = {}
        self._opset = opset
        self._cache: dict[str, np.ndarray] = {}
        known = set(self._tensors)
        for node in graph.node:  # in topological order
            inputs = [n for n in node.input if n]
            if (node.domain not in ("", "ai.onnx") or node.op_type in _RANDOM
                    or any(_subgraphs(node)) or not (inputs or node.op_type == "Constant")):
                continue
            if all(n in known for n in inputs):
                for name in node.output:
                    if name:
                        known.add(name)
                        self._producer[name] = node
        self._known = known

    def __contains__(self, name: str) -> bool:
        return name in self._known

    def array(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self._compute(name)
        return self._cache[name]

    def _compute(self, name: str) -> np.ndarray:
        from onnx import helper, numpy_helper

        if name in self._tensors:
            return numpy_helper.to_array(self._tensors[name])
        node = self._producer[name]
        if node.op_type == "Identity":
            return self.array(node.input[0])
        if node.op_type == "Constant":
            attr = node.attribute[0]
            value = helper.get_attribute_value(attr)
            if attr.name == "value":
                return numpy_helper.to_array(value)
            return _dense(value) if attr.name == "sparse_value" else np.asarray(value)
        from onnx.reference import ReferenceEvaluator

        feeds = {n: self.array(n) for n in node.input if n}
        try:
            values = ReferenceEvaluator(node, opsets={"": self._opset}).run(None, feeds)
        except Exception as err:  # the reference evaluator raises what its op raises
            raise UserError(f"cannot compute the constant {name!r} (node "
                            f"{node.name or node.op_type}): {one_line(str(err))}") from None
        for out, value in zip(node.output, values, strict=False):
            if out:
                self._cache[out] = np.asarray(value)
        return self._cache[name]


def _densify(graph: onnx.GraphProto) -> None:
    """Sparse initializers as dense ones (shape inference sizes dense initializers only)."""
    from onnx import numpy_helper

    for sparse in graph.sparse_initializer:
        graph.initializer.append(numpy_helper.from_array(_dense(sparse), sparse.values.name))
    del graph.sparse_initializer[:]


def _dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """A sparse initializer's dense array (indices linear, or one row of coordinates each)."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    dense = np.zeros(tuple(sparse.dims), values.dtype)
    if indices.ndim == 1:
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    return dense


class _NodeContext:
    """One GEMM node with what its lowering reads: shapes, constants, whether to take weights."""

    def __init__(self, node: onnx.NodeProto, label: str,
                 shapes: Mapping[str, tuple[int | None, ...] | None], consts: _Constants,
                 weights: bool) -> None:
        from onnx import helper

        self.node, self.label, self.weights = node, label, weights
        self.shapes, self.consts = shapes, consts
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def shape(self, index: int, what: str, output: bool = False) -> tuple[int, ...]:
        names = self.node.output if output else self.node.input
        name = names[index] if index < len(names) else ""
        shape = self.shapes.get(name) if name else None
        if shape is None or None in shape:
            raise UserError(f"shape inference could not size its {what} {name!r} "
                            f"({_text(shape)}): fix the input shapes (--input-shape) or the model")
        return tuple(int(d) for d in shape)

    def const(self, index: int) -> bool:
        return index < len(self.node.input) and self.node.input[index] in self.consts

    def array(self, index: int) -> np.ndarray | None:
        if not self.weights:
            return None
        return self.consts.array(self.node.input[index]).astype(np.float32)


def _conv(ctx: _NodeContext) -> dict:
    x = ctx.shape(0, "input")
    w = ctx.shape(1, "weight")
    y = ctx.shape(0, "output", output=True)
    if len(w) != 4 or len(x) != 4 or len(y) != 4:
        raise UserError(f"a {len(w) - 2}-D convolution (weight {_text(w)}) is not supported: "
                        "only 2-D convs lower to GEMMs")
    dilations = tuple(ctx.attrs.get("dilations", (1, 1)))
    if any(d != 1 for d in dilations):
        raise UserError(f"dilations {list(dilations)} are not supported: only dilation 1")
    group = int(ctx.attrs.get("group", 1))
    c_out, c_per_group, kh, kw = w
    c_in = x[1]
    if c_per_group * group != c_in or c_out % group:
        raise UserError(f"weight {_text(w)} with group {group} does not fit input {_text(x)}")
    auto_pad = ctx.attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad.startswith("SAME"):
        padding = (kh // 2, kw // 2)
    elif auto_pad == "VALID":
        padding = (0, 0)
    else:
        pads = tuple(ctx.attrs.get("pads", (0, 0, 0, 0)))
        padding = (int(pads[0]), int(pads[1]))
    strides = tuple(int(s) for s in ctx.attrs.get("strides", (1, 1)))
    weight = ctx.array(1) if ctx.const(1) else None
    return dict(
        kind="depthwise" if group > 1 and group == c_in else "conv",
        P=y[0] * y[2] * y[3], K=c_per_group * kh * kw, N=c_out // group, groups=group,
        kernel=(kh, kw), stride=(strides[0], strides[1]), padding=padding,
        in_shape=x, out_shape=y,
        weight=None if weight is None else weight.reshape(c_out, -1),
        weight_name=ctx.node.input[1],
    )


def _gemm(ctx: _NodeContext) -> dict:
    a = ctx.shape(0, "input A")
    b = ctx.shape(1, "input B")
    y = ctx.shape(0, "output", output=True)
    if len(a) != 2 or len(b) != 2:
        raise UserError(f"Gemm operands must be 2-D, got {_text(a)} and {_text(b)}")
    trans_a, trans_b = bool(ctx.attrs.get("transA", 0)), bool(ctx.attrs.get("transB", 0))
    m, k = (a[1], a[0]) if trans_a else a
    k_b, n = (b[1], b[0]) if trans_b else b
    if k != k_b:
        raise UserError(f"A {_text(a)} and B {_text(b)} do not share K")
    if ctx.const(1):
        weight = ctx.array(1)
        if weight is not None and not trans_b:
            weight = np.ascontiguousarray(weight.T)
        return dict(kind="linear", P=m, K=k, N=n, in_shape=a, out_shape=y, weight=weight,
                    weight_name=ctx.node.input[1])
    return dict(kind="matmul", P=m, K=k, N=n, in_shape=a, out_shape=y, weight_name="")


def _matmul(ctx: _NodeContext) -> dict:
    a = ctx.shape(0, "input A")
    b = ctx.shape(1, "input B")
    y = ctx.shape(0, "output", output=True)
    if not a or not b:
        raise UserError(f"MatMul operands must have rank >= 1, got {_text(a)} and {_text(b)}")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    m, k = a2[-2:]
    k_b, n = b2[-2:]
    if k != k_b:
        raise UserError(f"A {_text(a)} and B {_text(b)} do not share K")
    rows = math.prod(a[:-1])
    if ctx.const(1) and math.prod(b2[:-2]) == 1:
        weight = ctx.array(1)
        if weight is not None:
            weight = np.ascontiguousarray(weight.reshape(k, n).T)
        return dict(kind="linear", P=rows, K=k, N=n, in_shape=a, out_shape=y, weight=weight,
                    weight_name=ctx.node.input[1])
    if math.prod(b2[:-2]) == 1:
        return dict(kind="matmul", P=rows, K=k, N=n, in_shape=a, out_shape=y, weight_name="")
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError:
        raise UserError(f"batch dims of {_text(a)} and {_text(b)} do not broadcast") from None
    return dict(kind="matmul", P=m, K=k, N=n, groups=math.prod(batch), in_shape=a,
                out_shape=y, weight_name="")


_LOWER = {"Conv": _conv, "Gemm": _gemm, "MatMul": _matmul}
_SCOPE_NAME = re.compile(r"/(?:[^/]+/)+[^/]+")


def _layer_name(node: onnx.NodeProto, label: str, weight_name: str, kind: str) -> str:
    """The layer's name: ``<module>`` of a ``<module>.weight`` initializer, the module path of a
    scoped node name (``<module>.matmul`` for a GEMM of two activations), or the node's label
    (see the module docstring)."""
    if weight_name.endswith(".weight") and len(weight_name) > len(".weight"):
        return weight_name[: -len(".weight")]
    if _SCOPE_NAME.fullmatch(node.name):
        *scopes, op = node.name[1:].split("/")
        if re.fullmatch(rf"{re.escape(node.op_type)}(_\d+)?", op) and all(scopes):
            module = scopes[0]
            for scope in scopes[1:]:
                module += "." + scope.rsplit(".", 1)[-1]
            return f"{module}.{node.op_type.lower()}" if kind == "matmul" else module
    return label


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def _check_subgraphs(node: onnx.NodeProto, path: Path, label: str) -> None:
    """Refuse a control-flow node whose subgraphs hold GEMMs (not lowered)."""
    stack = list(_subgraphs(node))
    while stack:
        graph = stack.pop()
        for inner in graph.node:
            if inner.op_type in GEMM_OPS + REFUSED_OPS:
                raise UserError(f"{path}: node {label} ({node.op_type}) holds a {inner.op_type} "
                                "in a subgraph: control flow is not lowered")
            stack.extend(_subgraphs(inner))


def _outer_inputs(node: onnx.NodeProto) -> set[str]:
    """Values ``node`` reads: its inputs and what its subgraphs read from the outer graph."""
    used = {name for name in node.input if name}
    for graph in _subgraphs(node):
        local = {v.name for v in (*graph.input, *graph.initializer)}
        for inner in graph.node:
            local.update(inner.output)
        for inner in graph.node:
            used.update(name for name in _outer_inputs(inner) if name not in local)
    return used


def _sort(graph: onnx.GraphProto, path: Path) -> list[str]:
    """Put ``graph``'s nodes in topological order, the file's order where it allows (Kahn's
    algorithm, always taking the earliest ready node; shape inference reads the nodes in order),
    and return their labels: the name, or ``<op_type>_<index in the file>`` for an unnamed one.

    Raises:
        UserError: a graph with a cycle.
    """
    nodes = graph.node
    producer = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            if name:
                producer.setdefault(name, index)
    needs = [{producer[n] for n in _outer_inputs(node) if n in producer} - {i}
             for i, node in enumerate(nodes)]
    users: list[list[int]] = [[] for _ in nodes]
    for index, deps in enumerate(needs):
        for dep in deps:
            users[dep].append(index)
    waiting = [len(deps) for deps in needs]
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for user in users[index]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(nodes):
        stuck = next(nodes[i] for i, count in enumerate(waiting) if count)
        raise UserError(f"{path}: the graph has a cycle (through node "
                        f"{stuck.name or stuck.op_type}): not a valid ONNX model")
    labels = [nodes[i].name or f"{nodes[i].op_type}_{i}" for i in order]
    if order != sorted(order):
        copies = []
        for i in order:
            copy = type(nodes[i])()
            copy.CopyFrom(nodes[i])
            copies.append(copy)
        del nodes[:]
        nodes.extend(copies)
    return labels
