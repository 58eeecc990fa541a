"""Where a workload comes from: a zoo model name, a SCALE-Sim topology CSV, or a pruned file.

:func:`load_layers` is the one place the CLIs turn a ``SOURCE`` argument into GEMM layers.
"""

from __future__ import annotations

from pathlib import Path

from accel_sim.workload import GemmLayer, lower_model, read_topology_csv
from crisp.models import build_model, input_shape


def load_layers(
    source: str,
    batch: int = 1,
    resolution: int | None = None,
    checkpoint: str | Path | None = None,
) -> list[GemmLayer]:
    """GEMM layers of ``source`` in execution order.

    Args:
        source: a zoo model name (``resnet50``, ``resnet_small``, ...) or a ``.csv`` SCALE-Sim
            topology file.
        batch: samples per inference (P scales with it); ignored for topology files.
        resolution: input height and width in pixels; default the model's own (224 or 32).
        checkpoint: a state dict to load into a zoo model (its weights travel with the layers).

    Raises:
        UserError: unknown model name, bad topology file or checkpoint.
    """
    if source.endswith(".csv"):
        return read_topology_csv(source)
    model = build_model(source, checkpoint=checkpoint)
    channels, height, width = input_shape(source)
    if resolution is not None:
        height = width = resolution
    return lower_model(model, (channels, height, width), batch=batch)
