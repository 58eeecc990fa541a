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
