"""A pruned network's compressed file is a workload: its real masks drive the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from accel_sim.hardware import load_hardware
from accel_sim.simulate import simulate
from accel_sim.sources import load_workload
from crisp import compressed
from crisp.errors import UserError
from crisp.models import build_model, input_shape
from crisp.patterns import hybrid_mask


def _pruned_file(tmp_path: Path, num_classes: int = 10) -> tuple[Path, dict[str, torch.Tensor]]:
    """A hybrid-pruned resnet_small as a compressed file; its state dict beside it (weights.pt)."""
    torch.manual_seed(0)
    model = build_model("resnet_small", num_classes=num_classes)
    masks, patterns = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and name != "stem.0":
            w = module.weight.detach()
            mask = hybrid_mask(w.abs().reshape(w.shape[0], -1), 16, 1, 2, 4).reshape(w.shape)
            module.weight.data *= mask
            masks[f"{name}.weight"], patterns[name] = mask, "hybrid"
    path = tmp_path / "pruned.safetensors"
    compressed.save(model, path, masks, patterns, 2, 4, 16, input_shape("resnet_small"),
                    dtype="float32")
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    return path, masks


def test_a_checkpoints_zeros_are_its_masks_as_the_compressed_files(tmp_path: Path,
                                                                    capsys) -> None:
    path, _ = _pruned_file(tmp_path, num_classes=100)  # the zoo model's own head
    checkpoint = tmp_path / "weights.pt"
    layers, zeros = load_workload("resnet_small", checkpoint=checkpoint)
    stored, real = load_workload(str(path))
    assert [la.name for la in layers] == [la.name for la in stored]
    for name, mask in real.items():  # hybrid needs a zero block; a one-block row keeps it
        scheme = "nm" if mask.scheme == "hybrid" and mask.block_bitmap.all() else mask.scheme
        assert zeros[name].scheme == scheme, name
    assert sum(d.scheme == "hybrid" for d in zeros.values()) >= 10
    hw = load_hardware("edge-32x32")
    got, want = simulate(layers, hw, zeros).totals, simulate(stored, hw, real).totals
    assert got.compute_cycles == want.compute_cycles
    assert load_workload("resnet_small", checkpoint=checkpoint, weights=False)[1] is None
    assert load_workload("resnet_small")[1] is None  # its initial weights are no masks
    from accel_sim.cli import main

    assert main(["run", "resnet_small", "--checkpoint", str(checkpoint)]) == 0
    assert f"the zeros of {checkpoint}'s weights as masks (" in capsys.readouterr().out
    assert main(["run", "resnet_small", "--checkpoint", str(checkpoint), "--scheme", "nm"]) == 0
    assert "scheme nm, synthetic masks" in capsys.readouterr().out


def test_compressed_file_gives_layers_and_their_real_masks(tmp_path: Path) -> None:
    path, masks = _pruned_file(tmp_path)
    layers, descriptors = load_workload(str(path))
    dense_layers, none = load_workload("resnet_small")
    assert none is None
    assert [x.name for x in layers] == [x.name for x in dense_layers[:-1]] + ["fc"]
    conv = next(x for x in layers if x.name == "stages.1.conv1")
    spec = descriptors["stages.1.conv1"]
    assert (spec.scheme, spec.nm, spec.block) == ("hybrid", (2, 4), 16)
    want = masks["stages.1.conv1.weight"].reshape(conv.groups * conv.N, conv.K).numpy()
    np.testing.assert_array_equal(spec.mask, want)
    assert descriptors["stem.0"].scheme == "dense"


def test_real_hybrid_masks_save_cycles_and_batch_scales_p(tmp_path: Path) -> None:
    path, _ = _pruned_file(tmp_path)
    hw = load_hardware("edge-32x32")
    layers, descriptors = load_workload(str(path))
    sparse = simulate(layers, hw, descriptors).totals
    dense = simulate(load_workload("resnet_small")[0][:-1], hw).totals
    assert sparse.compute_cycles < dense.compute_cycles
    assert sparse.effective_macs < dense.effective_macs
    layers, _ = load_workload(str(path), batch=4)
    one, _ = load_workload(str(path))
    assert [x.P for x in layers] == [4 * x.P for x in one]


def test_resolution_cannot_change_a_pruned_file(tmp_path: Path) -> None:
    path, _ = _pruned_file(tmp_path)
    with pytest.raises(UserError, match="leave --resolution out"):
        load_workload(str(path), resolution=64)


def test_shapes_only_lowering_builds_on_the_meta_device() -> None:
    """A sweep needs shapes only: the same layers, no weights, no initialised model."""
    from accel_sim.sources import load_layers

    full = load_layers("resnet_small")
    shapes = load_layers("resnet_small", weights=False)
    assert shapes == full and len(shapes) == len(full)
    assert all(la.weight is None for la in shapes)
    assert all(la.weight is not None for la in full)
