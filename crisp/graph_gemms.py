"""Lowering by graph capture: every GEMM a network runs, found in its ``torch.export`` graph.

`crisp.lowering.trace_gemms` calls `capture_gemms` first. The network is exported once
(``torch.export.export`` on one zero input of the requested batch, in eval mode) and every
node of its graph that is a GEMM becomes one layer dict, in execution (graph) order:

- ``aten.conv2d`` / ``aten.convolution``: as the hook path (`crisp.lowering`), kind ``conv`` or
  ``depthwise``;
- ``aten.linear``, ``aten.addmm`` and ``matmul``/``mm``/``bmm``/``@``/two-operand ``einsum`` with
  one constant operand (a weight): kind ``linear``, ``P`` = the product of the activation's
  other dims; a constant on the left (``W @ x``) is the same GEMM transposed (``P`` runs over
  x's columns);
- ``matmul``/``mm``/``bmm``/``baddbmm``/``einsum`` of two activations: kind ``matmul``, one GEMM
  ``[M, K] x [K, N]`` per broadcast batch index (``groups``);
- ``scaled_dot_product_attention`` on ``q [..., L, E]``, ``k [..., S, E]``, ``v [..., S, Ev]``:
  two ``matmul`` layers with ``groups`` = the product of q's leading dims (batch x heads):
  ``<module>.attn_qk`` (``P=L, K=E, N=S``) and ``<module>.attn_av`` (``P=L, K=S, N=Ev``). A causal
  or masked attention is counted in full (a systolic array computes the masked scores too).

An operand is a *weight* when it does not depend on the input (parameters, buffers, and what is
computed from them only, e.g. a masked weight of `crisp.masks`); its value is read by running
the exported graph once. An ``einsum`` index summed inside one operand only is a reduction done
before the GEMM (adds, no MACs) and is not a GEMM dimension.

**Names.** A conv/linear called inside an ``nn.Conv2d``/``nn.Linear`` module takes that module's
dotted name (so the pruner's masks still match); a weight used by a function of another module
takes its parameter's name less ``.weight``/``_weight`` (``self_attention.in_proj`` of
``nn.MultiheadAttention``); an activation GEMM is ``<module>.<op>`` (``op`` one of ``matmul``,
``mm``, ``bmm``, ``baddbmm``, ``einsum``, ``attn_qk``, ``attn_av``). A name met again gets
``#1``, ``#2``, ...
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re

import torch
from torch import fx, nn

from crisp.errors import UserError

aten = torch.ops.aten

CONVS = {aten.conv2d.default, aten.conv2d.padding, aten.convolution.default}
UNSUPPORTED_CONVS = {aten.conv1d.default, aten.conv3d.default, aten.conv1d.padding,
                     aten.conv3d.padding, aten.conv_transpose1d.default,
                     aten.conv_transpose2d.input, aten.conv_transpose3d.input}
MATMULS = {aten.matmul.default: "matmul", aten.mm.default: "mm", aten.bmm.default: "bmm"}
#: GEMM ops with an added bias first: ``op(bias, a, b)``.
BIASED = {aten.addmm.default: "addmm", aten.baddbmm.default: "baddbmm"}
ATTENTION = aten.scaled_dot_product_attention.default
EINSUM = aten.einsum.default
GEMM_OPS = CONVS | set(MATMULS) | set(BIASED) | {aten.linear.default, ATTENTION, EINSUM}


def export_graph(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``model`` exported on ``example`` (``torch.export.export``), quietly: what export prints
    or logs while it fails (graph dumps, its warnings) is dropped; its exception says why."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # its handlers hold the real stderr: errors too
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return torch.export.export(model, (example,))
    finally:
        logging.disable(previous)


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(int(d) for d in node.meta["val"].shape)


def _innermost(node: fx.Node) -> str:
    """Dotted name of the innermost module whose forward ran ``node`` ("" at the top)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _data_nodes(graph: fx.Graph, user_inputs: set[str]) -> set[fx.Node]:
    """The nodes that depend on the user's inputs (activations); the others are constants."""
    data: set[fx.Node] = set()
    for node in graph.nodes:
        if node.name in user_inputs or any(a in data for a in node.all_input_nodes):
            data.add(node)
    return data


def _source_attr(node: fx.Node, lifted: dict[str, str]) -> str | None:
    """The parameter or buffer name behind a weight operand (through views and transposes),
    or None."""
    while node.op == "call_function" and node.args and isinstance(node.args[0], fx.Node) \
            and len(node.all_input_nodes) == 1:
        node = node.args[0]
    return lifted.get(node.name) if node.op == "placeholder" else None


def _weight_name(module_name: str, attr: str | None, owner: nn.Module | None) -> str | None:
    """A weight layer's name: its module's, else its parameter's less ``.weight``/``_weight``."""
    if isinstance(owner, (nn.Conv2d, nn.Linear)):
        return module_name
    if attr is None:
        return None
    return re.sub(r"(\.|_)weight$", "", attr)


def weight_array(w: torch.Tensor | None) -> object:
    """A weight as float32 numpy ``[N, K]``, K in PyTorch's flatten order (None stays None)."""
    if w is None:
        return None
    w = w.detach().to(torch.float32)
    return w.reshape(w.shape[0], -1).cpu().numpy()


class NumberedLayers:
    """Collects layer dicts in order; a name met again gets ``#1``, ``#2``, ..."""

    def __init__(self) -> None:
        self.found: list[dict] = []
        self.calls: dict[str, int] = {}

    def add(self, name: str, **fields: object) -> None:
        count = self.calls.get(name, 0)
        self.calls[name] = count + 1
        self.found.append(dict(name=name if count == 0 else f"{name}#{count}", **fields))


def gemm_layer(kind: str, P: int, K: int, N: int, groups: int, in_shape: tuple,
               out_shape: tuple, weight: object = None) -> dict:
    """One layer dict (`accel_sim.workload.GemmLayer`'s fields but its name), a 1x1 GEMM; a
    conv overrides ``kernel``, ``stride`` and ``padding``."""
    return dict(kind=kind, P=P, K=K, N=N, groups=groups, kernel=(1, 1), stride=(1, 1),
                padding=(0, 0), in_shape=in_shape, out_shape=out_shape, weight=weight)


def pair(value: object) -> tuple[int, int]:
    """A conv's int-or-sequence argument (stride, padding) as (height, width)."""
    if isinstance(value, int):
        return value, value
    values = list(value)
    return (int(values[0]), int(values[-1])) if values else (0, 0)


def conv_padding(padding: object, kh: int, kw: int) -> tuple[int, int]:
    """A conv's padding as (height, width): ints, or PyTorch's strings ``"same"`` (odd kernels:
    half of it) and ``"valid"`` (none)."""
    if isinstance(padding, str):
        return {"same": (kh // 2, kw // 2), "valid": (0, 0)}[padding]
    return pair(padding)


def _conv(node: fx.Node, weight: torch.Tensor | None) -> dict:
    x, w, out = _shape(node.args[0]), _shape(node.args[1]), _shape(node)
    if len(w) != 4:
        raise UserError(f"node {node.name}: a {len(w) - 2}-D convolution is not supported: "
                        "allowed Conv2d")
    args = list(node.args) + [None] * 9
    if node.target is aten.convolution.default:
        if args[6]:
            raise UserError(f"node {node.name}: a transposed convolution is not supported: "
                            "allowed Conv2d")
        stride, padding, groups = args[3], args[4], args[8]
    else:
        stride = args[3] if args[3] is not None else 1
        padding = args[4] if args[4] is not None else 0
        groups = args[6] if args[6] is not None else 1
    kh, kw = w[2], w[3]
    layer = gemm_layer("depthwise" if 1 < groups == x[1] else "conv", out[0] * out[2] * out[3],
                       w[1] * kh * kw, w[0] // groups, groups, x, out, weight_array(weight))
    return {**layer, "kernel": (kh, kw), "stride": pair(stride),
            "padding": conv_padding(padding, kh, kw)}


def _matmul_dims(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(groups, M, K, N) of ``torch.matmul`` on shapes a and b (numpy broadcasting, 1-D
    operands promoted)."""
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    batch = torch.broadcast_shapes(a2[:-2], b2[:-2])
    return math.prod(batch), a2[-2], a2[-1], b2[-1]


def _einsum_dims(node: fx.Node, equation: str, a: tuple[int, ...],
                 b: tuple[int, ...]) -> tuple[int, int, int, int, list, list]:
    """(groups, M, K, N) of a two-operand einsum, with the K and N letters of operand b."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                 if c not in equation)
    if "..." in equation:
        width = max(len(s) - len(t.replace("...", "")) for s, t in zip((a, b), terms, strict=True))
        dots = "".join(next(spare) for _ in range(width))
        terms = [t.replace("...", dots[width - (len(s) - len(t.replace("...", ""))):])
                 for s, t in zip((a, b), terms, strict=True)]
        output = output.replace("...", dots)
    if not arrow:
        letters = "".join(terms)
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ta, tb = terms
    if len(set(ta)) != len(ta) or len(set(tb)) != len(tb):
        raise UserError(f"node {node.name}: einsum {equation!r} repeats an index inside one "
                        "operand (a diagonal), which is not a GEMM")
    size = {**dict(zip(tb, b, strict=True)), **dict(zip(ta, a, strict=True))}
    batch = [c for c in ta if c in tb and c in output]
    m = [c for c in ta if c not in tb and c in output]
    k = [c for c in ta if c in tb and c not in output]
    n = [c for c in tb if c not in ta and c in output]

    def prod(letters: list) -> int:
        return math.prod(size[c] for c in letters)

    return prod(batch), prod(m), prod(k), prod(n), k, n


def capture_gemms(model: nn.Module, example: torch.Tensor, weights: bool = True) -> list[dict]:
    """The GEMM layers of ``model`` run on ``example`` (batch first), as dicts of
    `accel_sim.workload.GemmLayer`'s fields, in execution order (see the module docstring).

    Args:
        model: the network (in eval mode; on the meta device when ``weights`` is False).
        example: one input batch.
        weights: read each weight layer's weight (runs the graph once); False: shapes only.

    Raises:
        torch.export's own errors: a network export cannot capture (the caller falls back).
        UserError: a 1-D/3-D or transposed convolution, an einsum that is not a GEMM.
    """
    program = export_graph(model, example)
    graph, sig = program.graph, program.graph_signature
    lifted = {**sig.inputs_to_parameters, **sig.inputs_to_buffers,
              **sig.inputs_to_lifted_tensor_constants}
    data = _data_nodes(graph, set(sig.user_inputs))
    gemms = [n for n in graph.nodes if n.op == "call_function" and n.target in GEMM_OPS]
    # by every path (a module shared under two names is reached by both), named by its first
    names = {id(m): n for n, m in reversed(list(model.named_modules(remove_duplicate=False)))}
    modules = {path: (names[id(m)], m) for path, m in model.named_modules(remove_duplicate=False)}
    for node in graph.nodes:
        if node.op == "call_function" and node.target in UNSUPPORTED_CONVS:
            where = _innermost(node)
            what = type(modules[where][1]).__name__ if where in modules else str(node.target)
            raise UserError(f"layer {where or node.name}: {what} is not supported: allowed "
                            "Conv2d, Linear, matmul, attention")
    values = (_operand_values(program, example, gemms, data, modules, lifted)
              if weights else {})
    layers = NumberedLayers()
    for node in gemms:
        _lower(node, data, values, modules, lifted, layers)
    return layers.found


def _operand_values(program: torch.export.ExportedProgram, example: torch.Tensor,
                    gemms: list[fx.Node], data: set[fx.Node],
                    modules: dict[str, tuple[str, nn.Module]],
                    lifted: dict[str, str]) -> dict[fx.Node, torch.Tensor]:
    """The value of every constant GEMM operand (the weights). A Conv2d/Linear module's own
    weight is read from the module (masked, if parametrized); any other constant operand from
    one run of the exported graph (only when there is one). ``lifted`` maps the graph's
    placeholders to the state names they hold."""
    values: dict[fx.Node, torch.Tensor] = {}
    wanted = set()
    for node in gemms:
        owner = modules.get(_innermost(node), ("", None))[1]
        for operand in node.all_input_nodes:
            if operand in data:
                continue
            if isinstance(owner, (nn.Conv2d, nn.Linear)) and node.target in CONVS | {
                    aten.linear.default}:
                values[operand] = owner.weight
            else:
                wanted.add(operand)
    if not wanted:
        return values
    state = {**program.state_dict, **program.constants}
    user_inputs = set(program.graph_signature.user_inputs)
    args = [example if node.name in user_inputs else state[lifted[node.name]]
            for node in program.graph.nodes if node.op == "placeholder"]

    class Recorder(fx.Interpreter):
        def run_node(self, node: fx.Node) -> object:
            result = super().run_node(node)
            if node in wanted:
                values[node] = result
            return result

    with torch.no_grad():
        Recorder(program.graph_module).run(*args)
    return values


def _lower(node: fx.Node, data: set[fx.Node], values: dict,
           modules: dict[str, tuple[str, nn.Module]], lifted: dict[str, str],
           layers: NumberedLayers) -> None:
    """Append the layer(s) of one GEMM node."""
    where = _innermost(node)
    canonical, owner = modules.get(where, (where, None))

    def name_of(weight_node: fx.Node, op: str) -> str:
        return (_weight_name(canonical, _source_attr(weight_node, lifted), owner)
                or (f"{where}.{op}" if where else op))

    def act_name(op: str) -> str:
        return f"{where}.{op}" if where else op

    target, out = node.target, _shape(node)
    if target in CONVS:
        w = node.args[1]
        layers.add(name_of(w, "conv"), **_conv(node, values.get(w)))
        return
    if target is aten.linear.default:
        x, w = node.args[0], node.args[1]
        xs, ws = _shape(x), _shape(w)
        if w in data:  # F.linear of two activations
            layers.add(act_name("linear"),
                       **gemm_layer("matmul", math.prod(xs[:-1]), ws[1], ws[0], 1, xs, out))
            return
        layers.add(name_of(w, "linear"),
                   **gemm_layer("linear", math.prod(xs[:-1]), ws[1], ws[0], 1, xs, out,
                           weight_array(values.get(w))))
        return
    if target is ATTENTION:
        q, k, v = (_shape(a) for a in node.args[:3])
        groups, L, E, S, Ev = math.prod(q[:-2]), q[-2], q[-1], k[-2], v[-1]
        scores = (*q[:-2], L, S)
        layers.add(act_name("attn_qk"), **gemm_layer("matmul", L, E, S, groups, q, scores))
        layers.add(act_name("attn_av"), **gemm_layer("matmul", L, S, Ev, groups, scores, out))
        return
    if target is EINSUM:
        operands = node.args[1]
        if len(operands) == 1:
            return  # a sum or permutation of one tensor: no GEMM
        if len(operands) != 2:
            raise UserError(f"node {node.name} ({where or 'top level'}): einsum "
                            f"{node.args[0]!r} of {len(operands)} operands: contract them in "
                            "pairs (two-operand einsums are GEMMs)")
        a, b = operands
        groups, M, K, N, k_idx, n_idx = _einsum_dims(node, node.args[0], _shape(a), _shape(b))
        op = "einsum"
    else:
        a, b = (node.args[1], node.args[2]) if target in BIASED else node.args[:2]
        groups, M, K, N = _matmul_dims(_shape(a), _shape(b))
        op = MATMULS.get(target) or BIASED[target]
    a_const, b_const = a not in data, b not in data
    if b_const and len(_shape(b)) <= 2 and target is not EINSUM:
        # x @ W: a linear layer with weight W^T ([N, K]) over all of x's rows
        w = values.get(b)
        weight = None if w is None else weight_array(w.reshape(K, N).t())
        layers.add(name_of(b, op),
                   **gemm_layer("linear", groups * M, K, N, 1, _shape(a), out, weight))
    elif a_const and len(_shape(a)) == 2 and target is not EINSUM:
        # W @ x: the same GEMM transposed, P running over x's columns (and batch)
        layers.add(name_of(a, op), **gemm_layer("linear", groups * N, K, M, 1, _shape(b), out,
                                           weight_array(values.get(a))))
    elif target is EINSUM and b_const and groups == 1:
        w = values.get(b)
        weight = None
        if w is not None:
            tb = node.args[0].replace(" ", "").partition("->")[0].split(",")[1]
            if "..." not in tb and sorted(tb) == sorted(n_idx + k_idx):
                order = [tb.index(c) for c in n_idx + k_idx]
                weight = weight_array(w.permute(*order).reshape(N, K))
        layers.add(name_of(b, op), **gemm_layer("linear", M, K, N, 1, _shape(a), out, weight))
    else:
        layers.add(act_name(op), **gemm_layer("matmul", M, K, N, groups, _shape(a), out))
