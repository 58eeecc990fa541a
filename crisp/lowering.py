"""Lowering a PyTorch network to the GEMM layers it computes (geometry and weights, as dicts).

Every GEMM becomes ``O[P, N] = A[P, K] x W^T[K, N]`` repeated ``groups`` times, in execution
order; a Conv2d has ``P = batch*H_out*W_out``, ``K = (C_in/groups)*kh*kw``, ``N = C_out/groups``
(K in PyTorch's weight flatten order). `trace_gemms` captures the network's graph with
``torch.export`` (`crisp.graph_gemms`), so GEMMs computed by functions (attention,
``torch.matmul``, ``einsum``) are found too. A network export cannot capture is traced with
forward hooks on its Conv2d/Linear modules instead (`hook_gemms`), with a one-line warning on
stderr: that path sees only those modules, so functional GEMMs are missing from it. Either way
a module called twice appears twice (``name#1``). The compressed format (`crisp.compressed`)
stores this geometry; the simulator (`accel_sim.lowering`) turns each dict into a ``GemmLayer``.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

from crisp.errors import UserError, one_line
from crisp.graph_gemms import (
    NumberedLayers,
    capture_gemms,
    conv_padding,
    gemm_layer,
    pair,
    weight_array,
)


def _conv_layer(conv: nn.Conv2d, x: torch.Tensor, y: torch.Tensor, weights: bool) -> dict:
    kh, kw = conv.kernel_size
    g = conv.groups
    layer = gemm_layer("depthwise" if 1 < g == conv.in_channels else "conv",
                       y.shape[0] * y.shape[2] * y.shape[3], (conv.in_channels // g) * kh * kw,
                       conv.out_channels // g, g, tuple(x.shape), tuple(y.shape),
                       weight_array(conv.weight if weights else None))
    return {**layer, "kernel": (kh, kw), "stride": pair(conv.stride),
            "padding": conv_padding(conv.padding, kh, kw)}


def _linear_layer(lin: nn.Linear, x: torch.Tensor, y: torch.Tensor, weights: bool) -> dict:
    return gemm_layer("linear", math.prod(x.shape[:-1]), lin.in_features, lin.out_features, 1,
                      tuple(x.shape), tuple(y.shape), weight_array(lin.weight if weights else None))


def trace_gemms(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1,
                weights: bool = True) -> list[dict]:
    """Lower ``model`` on one zero input and return its GEMM layers in execution order
    (``weights=False``: without their weights, e.g. for a model on the meta device).

    By graph capture (`crisp.graph_gemms.capture_gemms`); a model ``torch.export`` cannot
    capture is lowered by `hook_gemms` with a warning on stderr naming the reason.

    Each layer is a dict of `accel_sim.workload.GemmLayer`'s fields (the simulator wraps
    them; the compressed format stores their geometry).

    Args:
        model: any network.
        input_shape: (channels, height, width) of one sample, without the batch.
        batch: samples per inference; P scales with it.

    Raises:
        UserError: a convolution other than 2-D, a network with no GEMM, or an input the network
            cannot take (a resolution too small for its downsampling).
    """
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros((batch, *input_shape), device=device)
    try:
        with torch.no_grad():
            found = capture_gemms(model, example, weights)
    except UserError:
        raise
    except Exception as err:  # any reason export gives up: fall back, say why
        found = hook_gemms(model, input_shape, batch, weights)  # raises for a bad input shape
        print(f"warning: torch.export cannot capture {type(model).__name__} "
              f"({type(err).__name__}: {one_line(str(err))[:200]}); lowered by forward hooks "
              "on Conv2d/Linear modules: GEMMs computed by functions (attention, matmul, "
              "einsum) are not counted", file=sys.stderr)
    finally:
        model.train(was_training)
    if not found:
        raise UserError(f"{type(model).__name__} has no Conv2d, Linear or matmul to simulate")
    return found


def hook_gemms(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1,
               weights: bool = True) -> list[dict]:
    """``model``'s Conv2d and Linear layers in execution order, found with forward hooks on
    one zero input (``weights=False``: without their weights).

    Each layer is a dict of `accel_sim.workload.GemmLayer`'s fields (the simulator wraps
    them; the compressed format stores their geometry).

    Args:
        model: any network; its Conv2d and Linear modules (and subclasses, e.g. parametrized or
            pruned ones) are lowered, every other module only passes activations on.
        input_shape: (channels, height, width) of one sample, without the batch.
        batch: samples per inference; P scales with it.

    Raises:
        UserError: a Conv1d/Conv3d/ConvTranspose layer (not a GEMM this lowering maps), a
            network with no Conv2d/Linear layer, or an input the network cannot take (a
            resolution too small for its downsampling).
    """
    layers = NumberedLayers()
    handles = []

    def hook(name: str):
        def record(
            module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
        ) -> None:
            make = _conv_layer if isinstance(module, nn.Conv2d) else _linear_layer
            layers.add(name, **make(module, inputs[0], output, weights))

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
    except (RuntimeError, AssertionError, ValueError) as err:  # a shape the network cannot
        # take: too small an input, a transformer's fixed image size (torch._assert), ...
        raise UserError(f"{type(model).__name__} cannot run on a {'x'.join(map(str, input_shape))} "
                        f"input (channels x height x width): {one_line(str(err))}") from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not layers.found:
        raise UserError(f"{type(model).__name__} has no Conv2d or Linear layer to simulate")
    return layers.found
