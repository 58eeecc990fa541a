"""Lowering a PyTorch network to GEMM layers (the one simulator module that needs torch).

Every GEMM the network runs (Conv2d, Linear, matmul, einsum, attention; see
`crisp.graph_gemms`) becomes a `accel_sim.workload.GemmLayer`, in execution order, with the GEMM
semantics documented in `accel_sim.workload`; the lowering itself is
`crisp.lowering.trace_gemms` (the pruner's compressed format stores the same geometry).

`accel_sim.sources` imports this module only when a zoo model name is given, so simulating a
SCALE-Sim topology or a pruned ``.safetensors`` file never imports torch.
"""

from __future__ import annotations

from torch import nn

from accel_sim.workload import GemmLayer
from crisp.lowering import trace_gemms


def lower_model(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1,
                weights: bool = True) -> list[GemmLayer]:
    """``model``'s GEMM layers in execution order (see `crisp.lowering.trace_gemms`;
    ``weights=False``: shapes only, e.g. a model on the meta device).

    Raises:
        UserError: a Conv1d/Conv3d/ConvTranspose layer (not a GEMM this lowering maps), an
            einsum that is not a GEMM, or a network with no GEMM.
    """
    return [GemmLayer(**layer) for layer in trace_gemms(model, input_shape, batch, weights)]
