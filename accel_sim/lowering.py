"""Lowering a PyTorch network to GEMM layers (the one simulator module that needs torch).

Every Conv2d / Linear of the network becomes a :class:`accel_sim.workload.GemmLayer`, in
execution order, with the GEMM semantics documented in :mod:`accel_sim.workload`. Layers are found
by running the network once with forward hooks, so residual and branching networks lower
correctly, and a module called twice appears twice (``name#1``).

:mod:`accel_sim.sources` imports this module only when a zoo model name is given, so simulating a
SCALE-Sim topology or a pruned ``.safetensors`` file never imports torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from accel_sim.workload import GemmLayer
from crisp.errors import UserError


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv_layer(name: str, conv: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> GemmLayer:
    kh, kw = conv.kernel_size
    g = conv.groups
    weight = conv.weight.detach().to(torch.float32).reshape(conv.out_channels, -1).cpu().numpy()
    return GemmLayer(
        name=name,
        kind="depthwise" if g > 1 and g == conv.in_channels else "conv",
        P=y.shape[0] * y.shape[2] * y.shape[3],
        K=(conv.in_channels // g) * kh * kw,
        N=conv.out_channels // g,
        groups=g,
        kernel=(kh, kw),
        stride=_pair(conv.stride),
        padding=_pair(conv.padding) if not isinstance(conv.padding, str) else (kh // 2, kw // 2),
        in_shape=tuple(x.shape),
        out_shape=tuple(y.shape),
        weight=weight,
    )


def _linear_layer(name: str, lin: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> GemmLayer:
    return GemmLayer(
        name=name,
        kind="linear",
        P=int(np.prod(x.shape[:-1])),
        K=lin.in_features,
        N=lin.out_features,
        in_shape=tuple(x.shape),
        out_shape=tuple(y.shape),
        weight=lin.weight.detach().to(torch.float32).cpu().numpy(),
    )


def lower_model(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1) -> list[GemmLayer]:
    """Trace ``model`` on one zero input and return its GEMM layers in execution order.

    Args:
        model: any network; its Conv2d and Linear modules (and subclasses, e.g. parametrized or
            pruned ones) are lowered, every other module only passes activations on.
        input_shape: (channels, height, width) of one sample, without the batch.
        batch: samples per inference; P scales with it.

    Raises:
        UserError: a Conv1d/Conv3d/ConvTranspose layer (not a GEMM this lowering maps) or a
            network with no Conv2d/Linear layer.
    """
    found: list[GemmLayer] = []
    calls: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def record(
            module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
        ) -> None:
            count = calls.get(name, 0)
            calls[name] = count + 1
            label = name if count == 0 else f"{name}#{count}"
            make = _conv_layer if isinstance(module, nn.Conv2d) else _linear_layer
            found.append(make(label, module, inputs[0], output))

        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d)):
            raise UserError(
                f"layer {name}: {type(module).__name__} is not supported: allowed Conv2d, Linear"
            )
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros((batch, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not found:
        raise UserError(f"{type(model).__name__} has no Conv2d or Linear layer to simulate")
    return found
