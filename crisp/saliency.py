"""Class-aware saliency: ``S = |W| * mean over minibatches of |dL/dW|`` on user-class data.

L is the cross-entropy on images of the user's classes only, so weights that matter for those
classes score high. ``W`` is the effective (masked) weight and the gradient is that of the trainable
tensor behind it, which is zero where the mask is False, so a pruned weight scores exactly zero.
The score is ``|W| * g``, not the public code's ``|W|^2 * g``.

`GradientMeter` accumulates ``|grad|`` after each backward pass, both in a dedicated pass
(`gradient_pass`, before any pruning) and during fine-tuning (the training loop calls
`GradientMeter.update` after every backward), so a round's saliency uses the gradients of the
previous round's fine-tuning.

The sums stay on the weights' device. Under ``torchrun`` `GradientMeter.mean` adds the sums
and the batch counts of all ranks (`crisp.distributed.all_reduce_sum`), so every rank gets
the mean over all minibatches of all ranks and builds the same masks. This holds both for the
gradient pass (each rank's own gradients) and for fine-tuning in ``DistributedDataParallel``
(gradients already averaged: the sum over ranks divided by the summed count is that average).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from crisp import distributed
from crisp.devices import Runtime, as_runtime
from crisp.masks import gemm_layers, weight_matrix, weight_name


def _weight_param(module: nn.Module) -> torch.Tensor:
    """The tensor whose ``.grad`` is the weight's gradient (``original`` when masked)."""
    if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
        return module.parametrizations.weight.original
    return module.weight


class GradientMeter:
    """Running mean of ``|dL/dW|`` per Conv2d/Linear weight, over the minibatches seen.

    Args:
        model: the network; the meter tracks the weights of the layers present at construction.
    """

    def __init__(self, model: nn.Module) -> None:
        self._layers = {weight_name(n): m for n, m in gemm_layers(model).items()}
        self._sums: dict[str, torch.Tensor] = {}
        self.batches = 0

    def update(self) -> None:
        """Add the current ``|grad|`` of every tracked weight (call after ``loss.backward()``)."""
        for name, module in self._layers.items():
            grad = _weight_param(module).grad
            if grad is None:
                continue
            if name in self._sums:
                self._sums[name] += grad.detach().abs()
            else:
                self._sums[name] = grad.detach().abs().clone()
        self.batches += 1

    def mean(self) -> dict[str, torch.Tensor]:
        """Mean ``|grad|`` per dotted weight name, shaped like the weight (empty before updates).

        Under ``torchrun`` a collective call: every rank must call it at the same point.
        """
        if not distributed.active():
            return {name: s / self.batches for name, s in self._sums.items()}
        batches = float(distributed.all_reduce_sum(torch.tensor([float(self.batches)]))[0])
        return {name: distributed.all_reduce_sum(s) / batches for name, s in self._sums.items()}

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._sums.clear()
        self.batches = 0


def gradient_pass(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    meter: GradientMeter,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    runtime: Runtime | None = None,
) -> None:
    """One pass over user-class data accumulating ``|dL/dW|`` into ``meter`` (weights unchanged).

    The model runs in eval mode (BatchNorm uses its running statistics and is not updated).

    Args:
        batches: ``(images [B, C, H, W], labels [B])`` minibatches of the user's classes, labels
            as the model's head indexes them, already on the model's device.
        runtime: its autocast wraps each forward pass (None: none).
    """
    rt = as_runtime(runtime)
    was_training = model.training
    model.eval()
    try:
        for images, labels in batches:
            model.zero_grad(set_to_none=True)
            with rt.autocast():
                loss = loss_fn(model(images), labels)
            loss.backward()
            meter.update()
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)


def saliency(model: nn.Module, mean_grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``S = |W| * g`` per weight as a float ``[C_out, K]`` matrix (K in PyTorch flatten order).

    Args:
        mean_grads: mean ``|dL/dW|`` by dotted weight name (`GradientMeter.mean`); layers
            without an entry are left out.
    """
    scores = {}
    for module_name, module in gemm_layers(model).items():
        name = weight_name(module_name)
        if name in mean_grads:
            w = weight_matrix(module).detach().abs()
            scores[name] = w * mean_grads[name].reshape(w.shape)
    return scores
