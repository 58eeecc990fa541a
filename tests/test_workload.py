"""Workload lowering against hand-computed GEMM shapes and known model MACs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from accel_sim.cli import main
from accel_sim.lowering import lower_model
from accel_sim.sources import load_workload
from accel_sim.workload import (
    MAX_ARRAY_SIDE,
    MAX_MACS,
    GemmLayer,
    read_topology,
    read_topology_csv,
    write_topology_csv,
)
from crisp.errors import UserError
from crisp.models import build_model, input_shape


@pytest.fixture(scope="module")
def resnet50_layers() -> list[GemmLayer]:
    return lower_model(build_model("resnet50"), input_shape("resnet50"))


def test_resnet50_conv1_shape(resnet50_layers: list[GemmLayer]) -> None:
    conv1 = resnet50_layers[0]
    assert (conv1.name, conv1.kind) == ("conv1", "conv")
    assert (conv1.P, conv1.K, conv1.N, conv1.groups) == (112 * 112, 3 * 7 * 7, 64, 1)
    assert conv1.stride == (2, 2) and conv1.padding == (3, 3)
    assert conv1.weight.shape == (64, 147)


def test_resnet50_macs_and_order(resnet50_layers: list[GemmLayer]) -> None:
    # 53 convs (incl. 4 downsample projections) and the fc, in execution order.
    assert len(resnet50_layers) == 54
    assert resnet50_layers[-1].name == "fc" and resnet50_layers[-1].kind == "linear"
    names = [layer.name for layer in resnet50_layers]
    # The projection runs after the block's main path convs in torchvision's forward.
    assert names.index("layer1.0.downsample.0") > names.index("layer1.0.conv3")
    gmacs = sum(layer.macs for layer in resnet50_layers) / 1e9
    assert gmacs == pytest.approx(4.09, abs=0.02)


def test_mobilenet_depthwise_layer() -> None:
    layers = lower_model(build_model("mobilenet_v2"), input_shape("mobilenet_v2"))
    dw = next(layer for layer in layers if layer.name == "features.2.conv.1.0")
    # 96 channels at 112x112, 3x3 stride 2 -> 56x56: one K=9, N=1 GEMM per channel.
    assert dw.kind == "depthwise"
    assert (dw.P, dw.K, dw.N, dw.groups) == (56 * 56, 9, 1, 96)
    assert dw.weight.shape == (96, 9)
    assert sum(layer.macs for layer in layers) / 1e6 == pytest.approx(300.8, abs=1)


def test_vgg_classifier_layers() -> None:
    layers = lower_model(build_model("vgg16_bn"), input_shape("vgg16_bn"))
    fcs = [(layer.P, layer.K, layer.N) for layer in layers if layer.kind == "linear"]
    assert fcs == [(1, 512 * 7 * 7, 4096), (1, 4096, 4096), (1, 4096, 1000)]
    assert sum(layer.macs for layer in layers) / 1e9 == pytest.approx(15.47, abs=0.05)


def test_batch_scales_p_and_shared_module_appears_twice() -> None:
    lin = nn.Linear(8, 4)
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 8), lin)
    layers = lower_model(model, (8,), batch=3)
    assert [layer.name for layer in layers] == ["0", "2", "0#1"]
    assert all(layer.P == 3 for layer in layers)


def test_weight_follows_pytorch_flatten_order() -> None:
    conv = nn.Conv2d(2, 3, (2, 3), bias=False)
    layer = lower_model(nn.Sequential(conv), (2, 5, 5))[0]
    w = conv.weight.detach()
    # K index = (c * kh + i) * kw + j
    assert layer.weight[1, (1 * 2 + 1) * 3 + 2] == pytest.approx(w[1, 1, 1, 2].item())
    assert torch.equal(torch.from_numpy(layer.weight), w.reshape(3, -1))


def test_unsupported_layer_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="Conv1d is not supported"):
        lower_model(nn.Sequential(nn.Conv1d(1, 1, 3)), (1, 8))


def test_topology_conv_rows_lower_like_scalesim(tmp_path) -> None:
    path = tmp_path / "topo.csv"
    path.write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\n"
        "Conv1, 224, 224, 7, 7, 3, 64, 2,\n"
        "CB2a_DP, 56, 56, 3, 3, 64, 64, 1,\n"
    )
    conv1, dw = read_topology_csv(path)
    # SCALE-Sim applies no padding: ceil((224 - 7 + 2) / 2) = 110 per axis.
    assert (conv1.P, conv1.K, conv1.N) == (110 * 110, 147, 64)
    assert (dw.kind, dw.P, dw.K, dw.N, dw.groups) == ("depthwise", 54 * 54, 9, 1, 64)


def test_topology_gemm_rows_round_trip(tmp_path) -> None:
    layers = [GemmLayer("a", "linear", P=5, K=7, N=3), GemmLayer("b", "linear", P=1, K=2, N=9)]
    write_topology_csv(layers, tmp_path / "g.csv")
    back = read_topology_csv(tmp_path / "g.csv")
    assert [(x.name, x.P, x.K, x.N) for x in back] == [("a", 5, 7, 3), ("b", 1, 2, 9)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Layer, M, N, K,\nfc, 4, x, 2,\n", r"g.csv:2: field 'n' = 'x' is not an integer"),
        ("Layer, M, N, K,\nfc, 4, 0, 2,\n", r"g.csv:2: field 'n' = 0 must be >= 1"),
        ("Layer, M, N, K,\n\nfc, 4,\n", r"g.csv:3: 3 fields, expected 4"),
        ("Name, A, B,\n", r"g.csv:1: unknown header"),
    ],
)
def test_bad_topology_rows_name_file_line_field(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "g.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_topology_csv(path)


def test_layers_above_the_mac_limit_are_refused() -> None:
    GemmLayer("ok", "linear", P=2**20, K=2**12, N=2**12)  # exactly MAX_MACS
    assert MAX_MACS == 2**44 and MAX_MACS * (17 + 3 * MAX_ARRAY_SIDE) < 2**62
    with pytest.raises(UserError, match=r"layer big: P\*K\*N\*groups = .* above the limit"):
        GemmLayer("big", "conv", P=2**20 + 1, K=2**12, N=2**12)
    layer = GemmLayer("b", "linear", P=2**22, K=2**11, N=2**11)
    with pytest.raises(UserError, match="layer b:"):
        replace(layer, P=layer.P * 8)  # a batch that scales P past the limit


def test_huge_topology_row_exits_2_with_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "huge.csv"
    path.write_text(f"{CONV_HEADER}\nhuge, 100000000, 100000000, 3, 3, 64, 64, 1,\n")
    assert main(["run", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:2: layer huge:")
    assert "3.686e+20 MACs" in lines[0] and "1.759e+13 (2**44)" in lines[0]


CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
               "Num Filter, Strides,")


def _nm_groups_ok(mask: np.ndarray, n: int, m: int) -> bool:
    """Every full group of m along K keeps exactly n, the tail at most n."""
    full = mask[:, : mask.shape[1] // m * m].reshape(mask.shape[0], -1, m).sum(axis=2)
    tail = mask[:, mask.shape[1] // m * m:].sum(axis=1)
    return bool((full == n).all() and (tail <= n).all())


def test_scalesim_v3_gemm_sparsity_column(tmp_path) -> None:
    path = tmp_path / "gemm.csv"  # SCALE-Sim v3's topologies/sparsity/gemm.csv, plus two rows
    path.write_text("Layer Name, M, N, K, Sparsity,\nGEMM_1, 3, 5, 16, 3:4,\n"
                    "GEMM_1, 1, 5, 16, 1:4,\nG3, 7, 9, 30, 1:1,\nG4, 7, 9, 30,\n")
    layers, nm = read_topology(path)
    assert [la.name for la in layers] == ["GEMM_1", "GEMM_1#1", "G3", "G4"]
    assert nm == {"GEMM_1": (3, 4), "GEMM_1#1": (1, 4)}
    got, descriptors = load_workload(str(path), seed=5)
    assert got == layers
    assert descriptors["G3"].scheme == descriptors["G4"].scheme == "dense"
    for name, (n, m) in nm.items():
        sp = descriptors[name]
        assert (sp.scheme, sp.nm, sp.mask.shape) == ("nm", (n, m), (5, 16))
        assert _nm_groups_ok(sp.mask, n, m)
    again = load_workload(str(path), seed=5)[1]
    other = load_workload(str(path), seed=6)[1]
    assert all(np.array_equal(again[k].mask, descriptors[k].mask) for k in nm)
    assert not all(np.array_equal(other[k].mask, descriptors[k].mask) for k in nm)


def test_scalesim_v3_conv_sparsity_column_runs_compressed(tmp_path, capsys) -> None:
    rows = "conv1, 16, 16, 3, 3, 32, 64, 1,{}\nCB_DP, 8, 8, 3, 3, 16, 16, 1,{}\n"
    sparse, dense = tmp_path / "sparse.csv", tmp_path / "dense.csv"
    sparse.write_text(f"{CONV_HEADER} Sparsity,\n" + rows.format(" 2:4,", " 1:4,"))
    dense.write_text(f"{CONV_HEADER}\n" + rows.format("", ""))
    layers, nm = read_topology(sparse)
    assert layers == read_topology_csv(dense) and layers[1].kind == "depthwise"
    assert nm == {"conv1": (2, 4), "CB_DP": (1, 4)}
    _, descriptors = load_workload(str(sparse))
    assert descriptors["CB_DP"].mask.shape == (16, 9)  # groups * N rows, K = 3 * 3
    assert all(_nm_groups_ok(descriptors[k].mask, *v) for k, v in nm.items())
    frames = []
    for path in (sparse, dense):
        out = tmp_path / f"{path.stem}.out.csv"
        assert main(["run", str(path), "--hw", "edge-32x32", "--out", str(out)]) == 0
        frames.append(pd.read_csv(out).set_index("layer"))
    assert "the N:M column of" in capsys.readouterr().out
    # edge-32x32 has 2:4 multiplexers: conv1 (K = 288) streams half its rows.
    assert frames[0].loc["conv1", "compute_cycles"] < frames[1].loc["conv1", "compute_cycles"]


@pytest.mark.parametrize(("cell", "message"), [
    ("2-4", r"Sparsity '2-4' is not N:M with integers 1 <= N <= M"),
    ("5:4", r"Sparsity '5:4': need 1 <= N <= M"),
    ("0:4", r"Sparsity '0:4': need 1 <= N <= M"),
    ("2:6", r"Sparsity '2:6': N:M = 2:6: M=6 must be a power of two in 2..16"),
    ("half", r"Sparsity 'half' is not N:M"),
])
def test_bad_sparsity_column_is_one_line_exit_2(tmp_path, capsys, cell: str, message: str) -> None:
    path = tmp_path / "g.csv"
    path.write_text(f"Layer, M, N, K, Sparsity,\nfc, 4, 4, 8, 2:4,\nfc2, 4, 4, 8, {cell},\n")
    with pytest.raises(UserError, match=rf"g.csv:3: layer fc2: {message}"):
        read_topology(path)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
