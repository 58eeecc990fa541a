"""ONNX models as simulator input (`accel_sim.onnx_lowering`): the op forms, names, the
zeros-as-mask rule, bad input through the CLI, and equality with the torch lowering on exported
networks (ResNet-50 and a small ViT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from accel_sim.cli import main
from accel_sim.onnx_lowering import lower_onnx, parse_input_shape
from accel_sim.sources import load_layers, load_workload
from accel_sim.sparsity import weight_sparsity
from crisp.errors import UserError

RNG = np.random.default_rng(0)


def _value(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _save(path: Path, nodes, inputs: dict, outputs, inits: dict | None = None,
          domains: tuple[str, ...] = ()) -> str:
    """An ONNX model of ``nodes`` (inputs: name -> shape; inits: name -> array) at ``path``."""
    graph = helper.make_graph(
        nodes, "g", [_value(n, s) for n, s in inputs.items()], [_value(n, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in (inits or {}).items()])
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return str(path)


def _weights(*shape: int) -> np.ndarray:
    """Random weights, none zero."""
    return RNG.uniform(0.5, 1.5, shape).astype(np.float32) * RNG.choice([-1, 1], shape)


def _key(layer) -> tuple:
    return layer.kind, layer.P, layer.K, layer.N, layer.groups


# --- the op forms ----------------------------------------------------------------------------


def test_conv_forms_names_and_weights(tmp_path) -> None:
    grouped, dw = _weights(16, 2, 3, 3), _weights(16, 1, 3, 3)
    path = _save(tmp_path / "conv.onnx", [
        helper.make_node("Conv", ["x", "onnx::Conv_7"], ["y1"], name="/blocks/blocks.0/conv/Conv",
                         group=4, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["y1"], ["r"], name="/blocks/blocks.0/act/Relu"),
        helper.make_node("Conv", ["r", "dw.weight"], ["y2"], name="c2", group=16,
                         auto_pad="SAME_UPPER"),
    ], {"x": [1, 8, 10, 10]}, ["y2"], {"onnx::Conv_7": grouped, "dw.weight": dw})
    first, second = lower_onnx(path)
    assert first.name == "blocks.0.conv" and second.name == "dw"
    assert (first.kind, first.P, first.K, first.N, first.groups) == ("conv", 25, 18, 4, 4)
    assert (first.kernel, first.stride, first.padding) == ((3, 3), (2, 2), (1, 1))
    assert first.in_shape == (1, 8, 10, 10) and first.out_shape == (1, 16, 5, 5)
    assert np.array_equal(first.weight, grouped.reshape(16, 18))
    assert _key(second) == ("depthwise", 25, 9, 1, 16) and second.padding == (1, 1)
    assert second.weight.dtype == np.float32 and second.weight.shape == (16, 9)
    assert all(la.weight is None for la in lower_onnx(path, weights=False))


def test_gemm_and_matmul_forms(tmp_path) -> None:
    fc, w2, proj = _weights(10, 16), _weights(10, 6), _weights(6, 5)
    path = _save(tmp_path / "gemm.onnx", [
        helper.make_node("Gemm", ["a", "fc.weight"], ["g1"], name="head", transB=1),
        helper.make_node("Gemm", ["g1", "w2"], ["g2"]),  # unnamed: op type and graph index
        helper.make_node("Gemm", ["g1", "g2"], ["g3"], name="act_gemm", transA=1),
        helper.make_node("MatMul", ["t", "proj"], ["m1"], name="/proj/MatMul"),
        helper.make_node("MatMul", ["q", "k"], ["m2"], name="/attn/MatMul"),
        helper.make_node("MatMul", ["q2", "k2"], ["m3"], name="/attn/MatMul_1"),
        helper.make_node("MatMul", ["t", "s"], ["m4"], name="shared_b"),
        helper.make_node("MatMul", ["v", "proj"], ["m5"], name="vec"),
    ], {"a": [4, 16], "t": [2, 7, 6], "q": [2, 3, 7, 6], "k": [2, 3, 6, 9], "q2": [2, 1, 7, 6],
        "k2": [3, 6, 9], "s": [6, 4], "v": [6]},
        ["g3", "m1", "m2", "m3", "m4", "m5"], {"fc.weight": fc, "w2": w2, "proj": proj})
    layers = lower_onnx(path)
    assert [la.name for la in layers] == ["fc", "Gemm_1", "act_gemm", "proj", "attn.matmul",
                                          "attn.matmul#1", "shared_b", "vec"]
    keys = [_key(la) for la in layers]
    assert keys[0] == ("linear", 4, 16, 10, 1) and np.array_equal(layers[0].weight, fc)  # transB
    assert keys[1] == ("linear", 4, 10, 6, 1) and np.array_equal(layers[1].weight, w2.T)
    assert keys[2] == ("matmul", 10, 4, 6, 1) and layers[2].weight is None  # A^T [10, 4] @ [4, 6]
    assert keys[3] == ("linear", 14, 6, 5, 1) and np.array_equal(layers[3].weight, proj.T)  # 3-D
    assert layers[3].in_shape == (2, 7, 6) and layers[3].out_shape == (2, 7, 5)
    assert keys[4] == ("matmul", 7, 6, 9, 6) and layers[4].weight is None
    assert keys[5] == ("matmul", 7, 6, 9, 6) and layers[5].out_shape == (2, 3, 7, 9)  # broadcast
    assert keys[6] == ("matmul", 14, 6, 4, 1)  # B a 2-D activation: all of A's rows are P
    assert keys[7] == ("linear", 1, 6, 5, 1)  # a 1-D A is one row


def test_gemm_with_only_a_constant_is_a_matmul(tmp_path) -> None:
    path = _save(tmp_path / "a.onnx", [helper.make_node("Gemm", ["w", "x"], ["y"], name="g")],
                 {"x": [16, 3]}, ["y"], {"w": _weights(4, 16)})
    (layer,) = lower_onnx(path)
    assert _key(layer) == ("matmul", 4, 16, 3, 1) and layer.weight is None


def test_computed_and_sparse_constants_are_weights(tmp_path) -> None:
    """A Transpose or a QDQ DequantizeLinear of an initializer, and a sparse initializer, are
    weights: the GEMMs are linear layers with the computed values."""
    w, q = _weights(5, 8), RNG.integers(-3, 4, (8, 5)).astype(np.int8)
    q[0] = 0
    sparse = np.zeros((8, 5), np.float32)
    sparse[[1, 6], [2, 4]] = [3.0, -2.0]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
         helper.make_node("MatMul", ["x", "wt"], ["y1"], name="transposed"),
         helper.make_node("DequantizeLinear", ["q", "scale"], ["dq"]),
         helper.make_node("MatMul", ["x", "dq"], ["y2"], name="qdq"),
         helper.make_node("MatMul", ["x", "s"], ["y3"], name="sparse")],
        "g", [_value("x", [3, 8])], [_value(n, None) for n in ("y1", "y2", "y3")],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(q, "q"),
         numpy_helper.from_array(np.array(0.5, np.float32), "scale")],
        sparse_initializer=[helper.make_sparse_tensor(
            numpy_helper.from_array(np.array([3.0, -2.0], np.float32), "s"),
            numpy_helper.from_array(np.array([1 * 5 + 2, 6 * 5 + 4], np.int64)), [8, 5])])
    path = tmp_path / "computed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    transposed, qdq, sparse_layer = lower_onnx(path)
    assert [_key(la) for la in (transposed, qdq, sparse_layer)] == [("linear", 3, 8, 5, 1)] * 3
    assert np.array_equal(transposed.weight, w)
    assert np.array_equal(qdq.weight, (q.astype(np.float32) * 0.5).T)
    assert np.array_equal(sparse_layer.weight, sparse.T)
    assert weight_sparsity([sparse_layer])["sparse"].scheme == "nm"  # two non-zeros keep 2:4


def test_order_is_topological_and_repeated_weights_get_suffixes(tmp_path) -> None:
    fc1, fc2 = _weights(8, 8), _weights(4, 8)
    path = _save(tmp_path / "order.onnx", [  # listed out of order: fc2 needs fc1's output
        helper.make_node("Gemm", ["h2", "fc2.weight"], ["y"], transB=1),
        helper.make_node("Gemm", ["h", "fc1.weight"], ["h2"], transB=1),
        helper.make_node("Gemm", ["x", "fc1.weight"], ["h"], transB=1),  # fc1 called twice
    ], {"x": [2, 8]}, ["y"], {"fc1.weight": fc1, "fc2.weight": fc2})
    assert [la.name for la in lower_onnx(path)] == ["fc1", "fc1#1", "fc2"]


def test_batch_scales_rows_and_matmul_groups(tmp_path) -> None:
    path = _save(tmp_path / "b.onnx", [
        helper.make_node("Conv", ["x", "c.weight"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["q", "k"], ["s"], name="qk"),
    ], {"x": [1, 3, 8, 8], "q": [1, 2, 5, 4], "k": [1, 2, 4, 5]}, ["y", "s"],
        {"c.weight": _weights(4, 3, 3, 3)})
    one = lower_onnx(path)
    conv, qk = load_layers(path, batch=3)
    assert conv.P == 3 * one[0].P and conv.in_shape == (3, 3, 8, 8) and conv.groups == 1
    assert qk.groups == 3 * one[1].groups and qk.P == one[1].P and qk.out_shape == (3, 2, 5, 5)


def test_input_shape_fixes_dynamic_dims(tmp_path) -> None:
    path = _save(tmp_path / "dyn.onnx", [helper.make_node("Gemm", ["x", "fc.weight"], ["y"],
                                                          transB=1)],
                 {"x": ["batch", 16]}, ["y"], {"fc.weight": _weights(4, 16)})
    assert lower_onnx(path, "5x16")[0].P == 5
    assert lower_onnx(path, {"x": (6, 16)})[0].P == 6
    assert lower_onnx(path, (7, 16))[0].P == 7
    assert parse_input_shape("a=1x128, b=2x3") == {"a": (1, 128), "b": (2, 3)}
    with pytest.raises(UserError, match="dynamic dims"):
        lower_onnx(path)
    # a static dim may live on inside the graph (a Reshape target): refused, not re-sized
    static = _save(tmp_path / "static.onnx", [helper.make_node("Gemm", ["x", "fc.weight"], ["y"],
                                                               transB=1)],
                   {"x": [2, 16]}, ["y"], {"fc.weight": _weights(4, 16)})
    assert lower_onnx(static, "2x16")[0].P == 2
    with pytest.raises(UserError, match=r"exported at 2x16, whose dim 0 is fixed.*--batch"):
        lower_onnx(static, "3x16")


# --- zeros as masks ----------------------------------------------------------------------------


def _masked_model(tmp_path) -> tuple[str, dict[str, np.ndarray]]:
    """Six layers on one input: weights with a 2:4 pattern, 2:4 plus a zero 4x4 block, whole
    zero blocks, scattered zeros, none, and a matmul of two activations."""
    nm = _weights(8, 16)
    for row in nm:  # 2 of every 4 along K zero: the 2:4 pattern
        for start in range(0, 16, 4):
            row[start + RNG.choice(4, 2, replace=False)] = 0
    hybrid = nm.copy()
    hybrid[4:8, 8:12] = 0
    block = _weights(8, 16)
    block[0:4, 4:8] = block[4:8, 8:16] = 0
    scattered = _weights(8, 16)
    scattered[0, 0] = scattered[3, 9] = 0  # a group of 4 keeps 3: not 2:4; no zero block
    weights = {"nm": nm, "hybrid": hybrid, "block": block, "unstructured": scattered,
               "dense": _weights(8, 16)}
    nodes = [helper.make_node("Gemm", ["x", f"{n}.weight"], [f"y_{n}"], transB=1)
             for n in weights]
    nodes.append(helper.make_node("MatMul", ["x", "xt"], ["gram"], name="gram"))
    path = _save(tmp_path / "masked.onnx", nodes, {"x": [4, 16], "xt": [16, 4]},
                 [*(f"y_{n}" for n in weights), "gram"],
                 {f"{n}.weight": w for n, w in weights.items()})
    return path, weights


def test_zeros_are_the_masks_with_the_most_structured_scheme(tmp_path) -> None:
    path, weights = _masked_model(tmp_path)
    layers, descriptors = load_workload(path, nm=(2, 4), block=4)
    assert {name: d.scheme for name, d in descriptors.items()} == {
        "nm": "nm", "hybrid": "hybrid", "block": "block", "unstructured": "unstructured",
        "dense": "dense", "gram": "dense"}
    for name, w in weights.items():
        if name != "dense":
            assert np.array_equal(descriptors[name].mask, w != 0), name
    assert descriptors["hybrid"].nm == (2, 4) and descriptors["hybrid"].block == 4
    assert descriptors["block"].block == 4 and descriptors["block"].nm is None
    assert descriptors["nm"].nm == (2, 4) and descriptors["nm"].block is None
    # without N:M patterns to test (--nm none), the 2:4 zeros are unstructured
    plain = weight_sparsity(layers, None, 4)
    assert [plain[n].scheme for n in ("nm", "hybrid", "block")] == ["unstructured"] * 2 + ["block"]
    # at a block size the zero blocks do not fill, the block layer is unstructured
    assert weight_sparsity(layers, (2, 4), 8)["block"].scheme == "unstructured"
    assert load_workload(path, weights=False)[1] is None  # shapes only: no masks


def test_run_uses_the_zeros_unless_a_scheme_is_given(tmp_path, capsys) -> None:
    path, _ = _masked_model(tmp_path)
    out = tmp_path / "r.csv"
    assert main(["run", path, "--block", "4", "--array", "8x8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"the zeros of {path}'s weights as masks (1 nm, 1 hybrid, 1 block, 1 unstructured, " \
           "2 dense; --scheme for synthetic masks)" in printed
    assert main(["run", path, "--scheme", "hybrid", "--block", "4", "--array", "8x8"]) == 0
    assert "scheme hybrid, synthetic masks" in capsys.readouterr().out
    assert main(["compare", path, "--schemes", "nm", "--array", "8x8"]) == 0
    assert main(["layers", path]) == 0
    assert "6 layers" in capsys.readouterr().out


# --- bad input ---------------------------------------------------------------------------------


def _error(argv: list[str], capsys) -> str:
    """The one line a CLI mistake prints (exit status 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_files_exit_2_with_one_line(tmp_path, capsys) -> None:
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model\n")
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for bad in (text, noise):
        err = _error(["layers", str(bad)], capsys)
        assert str(bad) in err and "not an ONNX model" in err
    assert "does not exist" in _error(["layers", str(tmp_path / "missing.onnx")], capsys)


def test_dynamic_inputs_and_bad_input_shapes_exit_2(tmp_path, capsys) -> None:
    path = _save(tmp_path / "dyn.onnx", [helper.make_node("Gemm", ["x", "fc.weight"], ["y"],
                                                          transB=1)],
                 {"x": ["batch", 16]}, ["y"], {"fc.weight": _weights(4, 16)})
    err = _error(["run", path], capsys)
    assert path in err and "input 'x' has dynamic dims (?x16)" in err and "--input-shape" in err
    assert main(["layers", path, "--input-shape", "3x16"]) == 0
    assert "1 layers, 0.000 GMACs" in capsys.readouterr().out
    err = _error(["layers", path, "--input-shape", "3x4x16"], capsys)
    assert "input 'x'" in err and "rank 2" in err and path in err
    assert "positive" in _error(["layers", path, "--input-shape", "0x16"], capsys)
    assert "positive" in _error(["layers", path, "--input-shape=-2x16"], capsys)
    assert "joined by 'x'" in _error(["layers", path, "--input-shape", "3,16"], capsys)
    assert "joined by 'x'" in _error(["layers", path, "--input-shape", "threex16"], capsys)
    assert "no input 'y'" in _error(["layers", path, "--input-shape", "y=3x16"], capsys)
    assert "--input-shape" in _error(["layers", "resnet_small", "--input-shape", "1x3"], capsys)
    assert "--input-shape" in _error(["layers", path, "--resolution", "64"], capsys)
    err = _error(["layers", path, "--input-shape", "3x16", "--pretrained"], capsys)
    assert err.startswith("error: --pretrained: ") and "--checkpoint" not in err


def test_unsized_and_unsupported_nodes_exit_2(tmp_path, capsys) -> None:
    unsized = _save(tmp_path / "unsized.onnx", [
        helper.make_node("Mystery", ["x"], ["h"], domain="example.custom"),
        helper.make_node("MatMul", ["h", "w"], ["y"], name="after_mystery"),
    ], {"x": [2, 8]}, ["y"], {"w": _weights(8, 4)}, domains=("example.custom",))
    err = _error(["layers", unsized], capsys)
    assert unsized in err and "node after_mystery (MatMul)" in err and "could not size" in err
    conv1d = _save(tmp_path / "c1.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="c1")],
                   {"x": [1, 4, 10]}, ["y"], {"w": _weights(8, 4, 3)})
    assert "node c1 (Conv): a 1-D convolution" in _error(["layers", conv1d], capsys)
    dilated = _save(tmp_path / "d.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="dil",
                                                           dilations=[2, 2])],
                    {"x": [1, 4, 10, 10]}, ["y"], {"w": _weights(8, 4, 3, 3)})
    assert "node dil (Conv): dilations [2, 2]" in _error(["layers", dilated], capsys)
    transposed = _save(tmp_path / "t.onnx", [helper.make_node("ConvTranspose", ["x", "w"], ["y"],
                                                              name="up")],
                       {"x": [1, 4, 5, 5]}, ["y"], {"w": _weights(4, 8, 2, 2)})
    assert "node up (ConvTranspose)" in _error(["layers", transposed], capsys)
    branch = helper.make_graph([helper.make_node("MatMul", ["x", "x"], ["z"])], "b", [],
                               [_value("z", None)])
    control = _save(tmp_path / "if.onnx", [
        helper.make_node("If", ["c"], ["y"], name="branchy", then_branch=branch,
                         else_branch=branch)], {"c": [], "x": [4, 4]}, ["y"])
    assert "node branchy (If) holds a MatMul" in _error(["layers", control], capsys)
    fused = _save(tmp_path / "fused.onnx", [
        helper.make_node("FusedMatMul", ["x", "w"], ["y"], name="fm", domain="com.microsoft")],
        {"x": [2, 8]}, ["y"], {"w": _weights(8, 4)}, domains=("com.microsoft",))
    assert "node fm (com.microsoft FusedMatMul)" in _error(["layers", fused], capsys)
    empty = _save(tmp_path / "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                  {"x": [2, 2]}, ["y"])
    assert "no Conv, Gemm, MatMul node" in _error(["layers", empty], capsys)


# --- exported networks against the torch lowering ---------------------------------------------


def _export(model, shape: tuple[int, ...], path: Path) -> str:
    import torch

    model.eval()
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False)
    return str(path)


def test_resnet50_export_lowers_as_the_torch_model(tmp_path, capsys) -> None:
    import torch  # noqa: F401  (before torchvision: crisp.models registers what it misses)

    from accel_sim.lowering import lower_model
    from crisp.models import build_model

    model = build_model("resnet50")
    path = _export(model, (3, 224, 224), tmp_path / "resnet50.onnx")
    ours = lower_onnx(path)
    theirs = lower_model(model, (3, 224, 224), weights=False)
    assert [_key(la) for la in ours] == [_key(la) for la in theirs]
    assert sum(la.macs for la in ours) == sum(la.macs for la in theirs)
    assert [la.name for la in ours] == [la.name for la in theirs]  # BN-folded convs included
    assert [la.shape_key for la in ours] == [la.shape_key for la in theirs]
    assert np.array_equal(ours[-1].weight, model.fc.weight.detach().numpy())
    assert main(["layers", path, "--batch", "2"]) == 0
    assert "54 layers, 8.178 GMACs" in capsys.readouterr().out


def test_vit_export_lowers_as_the_torch_model(tmp_path) -> None:
    from accel_sim.lowering import lower_model
    from crisp.models import build_model

    model = build_model("vit_small")  # attention by F.scaled_dot_product_attention
    path = _export(model, (3, 32, 32), tmp_path / "vit.onnx")
    ours = lower_onnx(path)
    theirs = lower_model(model, (3, 32, 32), weights=False)
    # the exporter writes attention as two MatMuls of activations: Q K^T then softmax(.) V,
    # groups = batch x heads, between the qkv and the output projection
    matmuls = [i for i, la in enumerate(ours) if la.kind == "matmul"]
    assert matmuls and len(matmuls) % 2 == 0
    for i in matmuls[::2]:
        qkv, qk, av, proj = ours[i - 1], ours[i], ours[i + 1], ours[i + 2]
        assert qkv.kind == proj.kind == "linear" and qk.groups == av.groups
        assert qk.P == av.P and qk.P == qkv.P  # L tokens (batch 1)
        assert (av.K, av.N) == (qk.N, qk.K)  # S keys, head dim E
        assert qk.groups * qk.K == proj.K and qkv.N == 3 * proj.K
    assert [_key(la) for la in ours] == [_key(la) for la in theirs]  # attention included
    assert sum(la.macs for la in ours) == sum(la.macs for la in theirs)
    # names agree where the torch side has a module (its attention GEMMs are attn_qk, attn_av)
    assert ([la.name for la in ours if la.kind != "matmul"]
            == [la.name for la in theirs if la.kind != "matmul"])
