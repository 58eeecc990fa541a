"""Where a workload comes from: a zoo model name, a SCALE-Sim topology CSV, or a pruned file.

`load_layers` and `load_workload` are the one place the CLIs turn a ``SOURCE``
argument into GEMM layers (and, for a pruned ``.safetensors`` file or a SCALE-Sim topology with a
``Sparsity`` column, their sparsity).

Only a zoo model name needs torch: `crisp.models` and `accel_sim.lowering` are imported
when one is given, so simulating a topology or a pruned file (read with
`crisp.compressed_format`, numpy only) never imports torch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from accel_sim.sparsity import LayerSparsity, from_weight, topology_sparsity
from accel_sim.workload import GemmLayer, read_topology
from crisp import compressed_format, ranges, run_folder
from crisp.errors import UserError


def load_layers(
    source: str,
    batch: int = 1,
    resolution: int | None = None,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    weights: bool = True,
) -> list[GemmLayer]:
    """GEMM layers of ``source`` in execution order.

    Args:
        source: a zoo model name (``resnet50``, ``resnet_small``, ...), a ``.csv`` SCALE-Sim
            topology file or a ``.safetensors`` file written by ``crisp prune``.
        batch: samples per inference (P scales with it); ignored for topology files.
        resolution: input height and width in pixels; default the model's own (224 or 32).
        checkpoint: a state dict to load into a zoo model (its weights travel with the layers).
        pretrained: load torchvision's weights into a zoo model instead.
        weights: False = shapes only: a zoo model without a checkpoint is built on PyTorch's
            meta device (no memory, no initialisation) and its layers carry no weights.

    Raises:
        UserError: unknown model name, bad topology file, compressed file or checkpoint (also:
            one of a run folder's files that does not match its manifest,
            `crisp.run_folder.check_file`), or pretrained weights that are not available
            offline.
    """
    return load_workload(source, batch, resolution, checkpoint, pretrained, weights=weights)[0]


def load_workload(
    source: str,
    batch: int = 1,
    resolution: int | None = None,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    seed: int = 0,
    weights: bool = True,
) -> tuple[list[GemmLayer], dict[str, LayerSparsity] | None]:
    """Layers of ``source`` and, where the source carries it, each layer's sparsity.

    A pruned file carries its layers' geometry at the input shape it was pruned for, so
    ``resolution`` cannot change it; ``batch`` scales P. The descriptors read each layer's mask
    as ``weight != 0`` with the scheme, N:M and block size stored for it (see
    `crisp.compressed_format.read_layers`); channel-pruned layers are smaller dense layers.

    A SCALE-Sim topology with a ``Sparsity`` column (SCALE-Sim v3,
    `accel_sim.workload.read_topology`) carries each layer's N:M but no weights: its sparse
    layers get synthetic N:M masks drawn from ``seed``
    (`accel_sim.sparsity.topology_sparsity`), the others run dense.

    Args:
        seed: seeds the synthetic masks of a sparse topology (the run's ``--seed``).
        weights: see `load_layers`.

    Returns:
        (layers, descriptors keyed by layer name, or None for sources without sparsity: zoo
        models and topologies without a sparse entry).
    """
    ranges.BATCH.check(batch, "batch")
    run_folder.check_file(source)  # a file of a run folder must belong to its run
    run_folder.check_file(checkpoint)
    if source.endswith(".csv"):
        layers, nm = read_topology(source)
        return layers, (topology_sparsity(layers, nm, seed) if nm else None)
    if source.endswith(".safetensors"):
        if resolution is not None:
            raise UserError(f"--resolution: {source} holds its layers at the shape it was pruned "
                            "for; leave --resolution out")
        return _pruned_workload(source, batch)
    import torch  # only for a zoo model

    from accel_sim.lowering import lower_model
    from crisp.models import build_model, input_shape

    shapes_only = not (weights or pretrained or checkpoint is not None)
    with torch.device("meta" if shapes_only else "cpu"):
        model = build_model(source, pretrained=pretrained, checkpoint=checkpoint)
    channels, height, width = input_shape(source)
    if resolution is not None:
        height = width = resolution
    return lower_model(model, (channels, height, width), batch=batch,
                       weights=not shapes_only), None


def _pruned_workload(path: str, batch: int) -> tuple[list[GemmLayer], dict[str, LayerSparsity]]:
    layers, descriptors = [], {}
    for stored in compressed_format.read_layers(path):
        layer = GemmLayer(name=stored.name, weight=stored.weight, **stored.geometry)
        if batch > 1:
            layer = replace(layer, P=layer.P * batch,
                            in_shape=(batch, *layer.in_shape[1:]),
                            out_shape=(batch, *layer.out_shape[1:]))
        layers.append(layer)
        scheme = stored.scheme if stored.scheme != "channel" else "dense"
        nm = (stored.n, stored.m) if scheme in ("nm", "hybrid") else (None, None)
        block = stored.b if scheme in ("block", "hybrid") else None
        descriptors[layer.name] = (LayerSparsity("dense") if scheme == "dense"
                                   else from_weight(layer, scheme, *nm, block))
    return layers, descriptors
