"""Weight masks that training respects, with a lifecycle: attach -> update -> squash.

A masked ``Conv2d``/``Linear`` weight is a `torch.nn.utils.parametrize` parametrization:
the module keeps its trainable tensor as ``parametrizations.weight.original`` and every access to
``module.weight`` returns ``original * mask``. So a masked weight is exactly zero in every forward
pass, and its gradient (the gradient of ``original``) is exactly zero too, whatever the optimizer
does. Masks are bool buffers keyed by the weight's dotted name (``stages.0.conv1.weight``) and
only ever shrink: `update` stores ``old & new``.

- `attach` registers all-True masks on the chosen layers (prepare);
- `update` narrows them (step);
- `squash` removes the parametrizations and leaves plain weights with the zeros (export).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from crisp.errors import UserError


class WeightMask(nn.Module):
    """Parametrization ``weight = original * mask`` holding a bool ``mask`` buffer.

    Masked entries are +0.0 exactly (``torch.where``, so never ``-0.0``) and get zero gradient.
    """

    def __init__(self, shape: torch.Size, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool, device=device))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        """The effective weight: ``original`` with the masked entries set to zero."""
        return torch.where(self.mask, original, 0.0)


def gemm_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every ``Conv2d`` and ``Linear`` of ``model`` by dotted module name, in definition order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def classifier_name(model: nn.Module) -> str:
    """Dotted module name of the classifier: the last Linear defined in the model."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(f"{type(model).__name__} has no Linear classifier")
    return linears[-1]


def weight_name(module_name: str) -> str:
    """The dotted tensor name masks are keyed by: ``<module>.weight``."""
    return f"{module_name}.weight"


def _module_of(model: nn.Module, tensor_name: str) -> nn.Module:
    module_name = tensor_name.removesuffix(".weight")
    layers = gemm_layers(model)
    if not tensor_name.endswith(".weight") or module_name not in layers:
        raise UserError(f"no Conv2d/Linear weight named {tensor_name!r} in the model")
    return layers[module_name]


def attach(model: nn.Module, names: list[str] | None = None) -> None:
    """Attach an all-True mask to each named weight (default: every Conv2d/Linear weight).

    Already-masked weights keep their masks. Masks live on their weight's device.
    """
    for tensor_name in names if names is not None else map(weight_name, gemm_layers(model)):
        module = _module_of(model, tensor_name)
        if not parametrize.is_parametrized(module, "weight"):
            mask = WeightMask(module.weight.shape, module.weight.device)
            parametrize.register_parametrization(module, "weight", mask)


def _parametrization(model: nn.Module, tensor_name: str) -> WeightMask:
    module = _module_of(model, tensor_name)
    if not parametrize.is_parametrized(module, "weight"):
        raise UserError(f"weight {tensor_name!r} has no mask attached")
    return module.parametrizations.weight[0]


def original(model: nn.Module, tensor_name: str) -> nn.Parameter:
    """The trainable tensor behind a masked weight (its ``.grad`` is zero where masked)."""
    _parametrization(model, tensor_name)
    return _module_of(model, tensor_name).parametrizations.weight.original


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The attached masks by dotted weight name (bool tensors shaped like the weights; copies)."""
    found = {}
    for module_name, module in gemm_layers(model).items():
        if parametrize.is_parametrized(module, "weight"):
            found[weight_name(module_name)] = module.parametrizations.weight[0].mask.clone()
    return found


def update(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Narrow the attached masks to ``old & new``; zero the masked entries of ``original``.

    Args:
        masks: bool masks by dotted weight name, each shaped like its weight (or its
            ``[C_out, K]`` matrix view), on any device (moved to the weight's).

    Raises:
        UserError: a name without an attached mask or a mask of the wrong size.
    """
    for tensor_name, new in masks.items():
        holder = _parametrization(model, tensor_name)
        if new.numel() != holder.mask.numel():
            raise UserError(
                f"mask for {tensor_name!r} has {new.numel()} entries, the weight "
                f"{tuple(holder.mask.shape)}"
            )
        holder.mask &= new.to(holder.mask.device, torch.bool).reshape(holder.mask.shape)
        with torch.no_grad():
            param = original(model, tensor_name)
            param.copy_(torch.where(holder.mask, param, 0.0))


def squash(model: nn.Module) -> None:
    """Remove every mask parametrization, leaving plain weights whose masked entries are zero."""
    for module in gemm_layers(model).values():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """A layer's (effective) weight as the ``[C_out, K]`` matrix, K in PyTorch flatten order."""
    return module.weight.reshape(module.weight.shape[0], -1)


def density(model: nn.Module, names: list[str] | None = None) -> float:
    """Fraction of non-zero effective weights over the named (default all) Conv2d/Linear weights."""
    layers = gemm_layers(model)
    chosen = names if names is not None else list(map(weight_name, layers))
    kept = total = 0
    for tensor_name in chosen:
        w = _module_of(model, tensor_name).weight
        kept += int(torch.count_nonzero(w))
        total += w.numel()
    return kept / total if total else 1.0
