"""The model zoo, its checkpoint loading and the torchvision compatibility shim."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from crisp.errors import UserError
from crisp.models import build_model, list_models, load_checkpoint, torchvision_models


def test_small_models_run_on_32x32_and_list_contains_torchvision() -> None:
    names = list_models()
    assert {"resnet_small", "vgg_small", "resnet50", "vgg16_bn", "mobilenet_v2"} <= set(names)
    for name in ("resnet_small", "vgg_small"):
        out = build_model(name, num_classes=10)(torch.zeros(2, 3, 32, 32))
        assert out.shape == (2, 10)


def test_unknown_model_lists_names() -> None:
    with pytest.raises(UserError, match=r"unknown model 'resnet5': choose one of .*resnet50"):
        build_model("resnet5")


def test_checkpoint_round_trip_and_first_mismatch(tmp_path) -> None:
    model = build_model("resnet_small", num_classes=10)
    path = tmp_path / "m.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    again = build_model("resnet_small", num_classes=10, checkpoint=path)
    assert torch.equal(again.fc.weight, model.fc.weight)
    with pytest.raises(UserError, match=r"'fc.weight' has shape \(10, 128\), the model expects"):
        build_model("resnet_small", num_classes=5, checkpoint=path)
    state = model.state_dict()
    del state["stem.0.weight"]
    torch.save(state, path)
    with pytest.raises(UserError, match=r"missing 'stem\.0\.weight'"):
        load_checkpoint(build_model("resnet_small", num_classes=10), path)


def test_pretrained_small_model_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="no published weights for vgg_small"):
        build_model("vgg_small", pretrained=True)


def test_torchvision_shim_only_when_import_fails() -> None:
    """In a fresh interpreter: the plain import fails on CPU torch, the zoo's import works."""
    code = (
        "import sys\n"
        "try:\n"
        "    import torchvision\n"
        "    plain = 'ok'\n"
        "except RuntimeError as e:\n"
        "    plain = 'nms' if 'torchvision::nms' in str(e) else 'other'\n"
        "from crisp import models\n"
        "m = models.torchvision_models().resnet18()\n"
        "print(plain, len(models._TORCHVISION_SHIM), type(m).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    plain, shims, model = out.stdout.split()
    assert model == "ResNet"
    # The shim is applied exactly when, and only when, the plain import failed.
    assert (plain, shims) in {("nms", "1"), ("ok", "0")}


def test_pretrained_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.error import URLError

    torchvision_models()  # the import shim first, so torchvision imports on CPU torch
    import torchvision.models._api as api

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match=r"--pretrained resnet18: .* cannot be downloaded"):
        build_model("resnet18", pretrained=True)


def _lowered(name: str) -> dict[str, tuple[int, int, int]]:
    from accel_sim.lowering import lower_model
    from crisp.models import input_shape

    layers = lower_model(build_model(name), input_shape(name))
    return {layer.name: (layer.P, layer.K, layer.N) for layer in layers}


def test_resnet18_cifar_layout_and_gemm_shapes() -> None:
    model = build_model("resnet18_cifar")
    weights = sum(m.weight.numel() for m in model.modules()
                  if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert weights == 11_210_432  # ResNet-18's CIFAR layout with a 100-way head
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    shapes = _lowered("resnet18_cifar")
    # stem + 8 blocks x 2 convs + 3 projections + fc
    assert len(shapes) == 1 + 16 + 3 + 1
    assert shapes["stem.0"] == (32 * 32, 3 * 9, 64)  # 3x3 stride 1: 32x32 outputs
    assert shapes["stages.1.conv2"] == (32 * 32, 64 * 9, 64)
    assert shapes["stages.2.conv1"] == (16 * 16, 64 * 9, 128)  # first block of stage 2 strides
    assert shapes["stages.2.shortcut.0"] == (16 * 16, 64, 128)
    assert shapes["stages.7.conv2"] == (4 * 4, 512 * 9, 512)
    assert shapes["fc"] == (1, 512, 100)
    assert build_model("resnet18_cifar", num_classes=10)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_vgg16_cifar_layout_and_gemm_shapes() -> None:
    model = build_model("vgg16_cifar")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512,
                                                512, 512, 512]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 13
    shapes = _lowered("vgg16_cifar")
    assert len(shapes) == 14
    assert shapes["features.0.0"] == (32 * 32, 27, 64)
    assert shapes["features.1.0"] == (32 * 32, 64 * 9, 64)
    assert shapes["features.3.0"] == (16 * 16, 64 * 9, 128)  # after the first pool
    assert shapes["features.16.0"] == (2 * 2, 512 * 9, 512)  # the last conv (17 is a pool)
    assert shapes["classifier"] == (1, 512, 100)
    # MACs by hand: per stage P * K * N summed, 1.77 M + 37.7 M (32x32) ... + 51 200 (head)
    assert sum(p * k * n for p, k, n in shapes.values()) == 313_247_744


def test_small_models_keep_their_checkpoint_layout() -> None:
    # resnet_small and vgg_small state dicts are unchanged by the deeper variants' options
    keys = list(build_model("resnet_small").state_dict())
    assert keys[:2] == ["stem.0.weight", "stem.1.weight"] and "stages.3.conv2.weight" in keys
    assert "stages.4.conv1.weight" not in keys
    assert "features.9.0.weight" in build_model("vgg_small").state_dict()
