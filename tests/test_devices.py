"""Device selection (--device, --amp, --workers), and pruning that stays on its device."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from crisp import distributed
from crisp.cli import main
from crisp.devices import Runtime, as_runtime, resolve_device, runtime
from crisp.errors import UserError
from crisp.models import ResNetSmall
from crisp.pruner import PruneConfig, prune
from crisp.train import TrainConfig

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
without_cuda = pytest.mark.skipif(CUDA, reason="this machine has CUDA")


def test_cpu_is_always_available() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    rt = runtime("cpu")
    assert rt == Runtime() and not rt.amp and not rt.pin_memory and not rt.channels_last
    assert as_runtime(None) == rt and as_runtime("cpu") == rt and as_runtime(rt) is rt


def test_auto_picks_cuda_when_present() -> None:
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cpu:0", "tpu", ""])
def test_unknown_device_names_are_user_errors(name: str) -> None:
    with pytest.raises(UserError, match="allowed auto, cpu, cuda, mps"):
        resolve_device(name)


def test_amp_and_workers_are_checked() -> None:
    if not CUDA:
        with pytest.raises(UserError, match="only used on CUDA"):
            runtime("cpu", amp=True)
    with pytest.raises(UserError, match="--workers -1"):
        runtime("cpu", workers=-1)
    assert runtime("cpu", amp=False, workers=2).workers == 2


@without_cuda
def test_cuda_without_cuda_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["prune", "--device", "cuda", "--classes", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device cuda:") and "\n" not in err
    assert main(["eval", "--device", "cuda:1", "--checkpoint", "x.pt"]) == 2
    assert "\n" not in capsys.readouterr().err.strip()


@pytest.mark.skipif(platform.system() == "Darwin", reason="macOS may have Metal")
def test_mps_off_macos_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["train", "--device", "mps", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--device mps" in err and "not available" in err and "\n" not in err


@needs_cuda
def test_cuda_runtime_defaults() -> None:
    rt = runtime("cuda")
    assert rt.device.type == "cuda" and rt.amp and rt.pin_memory and rt.channels_last
    assert not runtime("cuda", amp=False).amp


def _tiny_task(seed: int = 0) -> tuple[nn.Module, TensorDataset, TensorDataset]:
    """A narrow resnet_small over 4 classes and 16 random 16x16 images (class-coloured planes)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ResNetSmall(num_classes=4, widths=(8, 16, 16, 32))
    labels = torch.arange(16) % 4
    images = torch.randn(16, 3, 16, 16, generator=gen)
    images[:, 0] += labels[:, None, None].float()
    return model, TensorDataset(images, labels), TensorDataset(images[:8], labels[:8])


def _config(epochs: int) -> PruneConfig:
    return PruneConfig(scheme="hybrid", density=0.3, step=0.5, block=8, epochs=epochs,
                       train=TrainConfig(batch_size=4), batch_size_grad=4)


def test_same_seed_gives_identical_masks_on_the_cpu() -> None:
    model, train, test = _tiny_task()
    first = prune(model, train, test, [1, 2], _config(1), seed=3, runtime="cpu")
    second = prune(model, train, test, [1, 2], _config(1), seed=3, runtime=runtime("cpu"))
    assert first.masks.keys() == second.masks.keys() and first.masks
    for name, mask in first.masks.items():
        assert torch.equal(mask, second.masks[name]), name
    assert distributed.digest(first.masks) == first.record["rounds"][-1]["mask_sha256"]
    assert first.record["runtime"]["device"] == "cpu" and first.record["world_size"] == 1


def _on_device_guard(model: nn.Module, device: torch.device) -> list[str]:
    """Forward pre-hooks that note every input, parameter or buffer not on ``device``."""
    wrong: list[str] = []

    def check(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        tensors = [*inputs, *module.parameters(recurse=False), *module.buffers(recurse=False)]
        wrong.extend(f"{type(module).__name__}:{t.device}" for t in tensors
                     if isinstance(t, torch.Tensor) and t.device.type != device.type)

    for module in model.modules():
        module.register_forward_pre_hook(check)
    return wrong


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_pruning_stays_on_the_requested_device(device: str) -> None:
    """Every forward pass (gradients, fine-tuning, evaluation) sees only tensors on ``device``.

    The hooks travel with the copy `prune` makes (deepcopy keeps them).
    """
    model, train, test = _tiny_task()
    rt = runtime(device, amp=False)
    wrong = _on_device_guard(model, rt.device)
    calls = []
    model.fc.register_forward_pre_hook(lambda module, inputs: calls.append(inputs[0].device))
    result = prune(model, train, test, [0, 3], _config(1), seed=0, runtime=rt)
    assert calls and not wrong, wrong[:5]
    assert {d.type for d in calls} == {rt.device.type}
    assert all(m.device.type == "cpu" for m in result.masks.values())  # results come back
    assert next(result.model.parameters()).device.type == "cpu"
    assert result.record["runtime"]["device"].startswith(device)


@needs_cuda
def test_cpu_and_cuda_give_the_same_masks_for_a_deterministic_case() -> None:
    """No fine-tuning, fp32, no channels_last: the saliency differs by float rounding only, so
    the masks agree unless two scores tie within rounding (see the README)."""
    model, train, test = _tiny_task()
    cpu = prune(model, train, test, [1, 2], _config(0), seed=5, runtime="cpu")
    gpu = prune(model, train, test, [1, 2], _config(0), seed=5,
                runtime=runtime("cuda", amp=False, channels_last=False))
    for name, mask in cpu.masks.items():
        assert torch.equal(mask, gpu.masks[name]), name


def test_channels_last_keeps_the_masks_in_weight_order() -> None:
    """The CUDA memory format exercised on the CPU: NHWC weights and batches change the strides,
    never the logical order, so the masks (and the saved model) are the contiguous run's."""
    model, train, test = _tiny_task()
    plain = prune(model, train, test, [1, 2], _config(0), seed=5, runtime="cpu")
    nhwc = prune(model, train, test, [1, 2], _config(0), seed=5,
                 runtime=Runtime(channels_last=True))
    for name, mask in plain.masks.items():
        assert torch.equal(mask, nhwc.masks[name]), name
    weight = nhwc.model.stages[0].conv1.weight
    assert weight.is_contiguous()
    assert torch.equal(weight == 0, ~plain.masks["stages.0.conv1.weight"])


def test_a_fixed_cuda_index_under_torchrun_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UserError, match="each rank uses cuda:LOCAL_RANK"):
        runtime("cuda:0")
    assert runtime("cpu").device == torch.device("cpu")
