"""Where a workload comes from: a zoo model name, a SCALE-Sim topology CSV, a pruned file or an
ONNX model.

`load_layers` and `load_workload` are the one place the CLIs turn a ``SOURCE``
argument into GEMM layers (and, for a pruned ``.safetensors`` file, a SCALE-Sim topology with a
``Sparsity`` column or an ONNX model's weights, their sparsity).

Only a zoo model name needs torch: `crisp.models` and `accel_sim.lowering` are imported
when one is given, so simulating a topology, a pruned file (read with
`crisp.compressed_format`, numpy only) or an ONNX model (`accel_sim.onnx_lowering`, the
``onnx`` package only) never imports torch.
"""

from __future__ import annotations

from pathlib import Path

from accel_sim.sparsity import LayerSparsity, from_weight, topology_sparsity, weight_sparsity
from accel_sim.workload import GemmLayer, read_topology
from crisp import compressed_format, ranges, run_folder
from crisp.errors import UserError
from crisp.pattern_core import DEFAULT_BLOCK


def load_layers(
    source: str,
    batch: int = 1,
    resolution: int | None = None,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    weights: bool = True,
    input_shape: str | None = None,
) -> list[GemmLayer]:
    """GEMM layers of ``source`` in execution order.

    Args:
        source: a zoo model name (``resnet50``, ``resnet_small``, ...), a ``.csv`` SCALE-Sim
            topology file, a ``.safetensors`` file written by ``crisp prune`` or an ``.onnx``
            model (`accel_sim.onnx_lowering`).
        batch: samples per inference (P scales with it); ignored for topology files.
        resolution: input height and width in pixels; default the model's own (224 or 32).
        checkpoint: a state dict to load into a zoo model (its weights travel with the layers).
        pretrained: load torchvision's weights into a zoo model instead.
        weights: False = shapes only: a zoo model without a checkpoint is built on PyTorch's
            meta device (no memory, no initialisation) and its layers carry no weights.
        input_shape: an ONNX model's input shapes (``1x3x224x224``, or ``NAME=DIMS,...``; see
            `accel_sim.onnx_lowering`), needed where its inputs have dynamic dims.

    Raises:
        UserError: unknown model name, bad topology file, compressed file, ONNX model or
            checkpoint (also: one of a run folder's files that does not match its manifest,
            `crisp.run_folder.check_file`), or pretrained weights that are not available
            offline.
    """
    if source.endswith(".onnx"):  # no masks to read from its zeros
        _check_inputs(source, batch, checkpoint)
        return _onnx_workload(source, batch, resolution, checkpoint, pretrained, weights,
                              input_shape, masks=None)[0]
    return load_workload(source, batch, resolution, checkpoint, pretrained, weights=weights,
                         input_shape=input_shape)[0]


def load_workload(
    source: str,
    batch: int = 1,
    resolution: int | None = None,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    seed: int = 0,
    weights: bool = True,
    input_shape: str | None = None,
    nm: tuple[int, int] | None = (2, 4),
    block: int = DEFAULT_BLOCK,
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

    An ONNX model's weights are its masks, and so are a zoo model's loaded from ``checkpoint``
    or ``pretrained``: with ``weights`` each layer's descriptor is read from its weight's zeros
    at ``nm`` and ``block`` (`accel_sim.sparsity.weight_sparsity`: dense, hybrid, nm, block or
    unstructured); without, the descriptors are None (the caller draws synthetic masks), as for
    a zoo model's own initial weights.

    Args:
        seed: seeds the synthetic masks of a sparse topology (the run's ``--seed``).
        weights: see `load_layers`.
        input_shape: see `load_layers`.
        nm: the N:M pattern an ONNX model's zeros are tested for (the run's ``--nm``; None:
            none).
        block: the block size B an ONNX model's zeros are tested for (the run's ``--block``).

    Returns:
        (layers, descriptors keyed by layer name, or None for sources without sparsity: zoo
        models without loaded weights, topologies without a sparse entry and models read
        without weights).
    """
    _check_inputs(source, batch, checkpoint)
    if source.endswith(".onnx"):
        return _onnx_workload(source, batch, resolution, checkpoint, pretrained, weights,
                              input_shape, masks=(nm, block))
    if input_shape is not None:
        raise UserError(f"--input-shape: {source} is not an ONNX model (.onnx); a zoo model "
                        "takes --resolution, a topology or pruned file has its shapes")
    if source.endswith(".csv"):
        layers, pattern = read_topology(source)
        return layers, (topology_sparsity(layers, pattern, seed) if pattern else None)
    if source.endswith(".safetensors"):
        if resolution is not None:
            raise UserError(f"--resolution: {source} holds its layers at the shape it was pruned "
                            "for; leave --resolution out")
        return _pruned_workload(source, batch)
    import torch  # only for a zoo model

    from accel_sim.lowering import lower_model
    from crisp.models import build_for_shapes, build_model, input_shape

    shapes_only = not (weights or pretrained or checkpoint is not None)
    if shapes_only:
        model = build_for_shapes(source)
    else:
        with torch.device("cpu"):
            model = build_model(source, pretrained=pretrained, checkpoint=checkpoint)
    channels, height, width = input_shape(source)
    if resolution is not None:
        height = width = resolution
    layers = lower_model(model, (channels, height, width), batch=batch, weights=not shapes_only)
    loaded = weights and (pretrained or checkpoint is not None)  # weights whose zeros mean masks
    return layers, (weight_sparsity(layers, nm, block) if loaded else None)


def _check_inputs(source: str, batch: int, checkpoint: str | Path | None) -> None:
    ranges.BATCH.check(batch, "batch")
    run_folder.check_file(source)  # a file of a run folder must belong to its run
    run_folder.check_file(checkpoint)


def _onnx_workload(
    source: str, batch: int, resolution: int | None, checkpoint: str | Path | None,
    pretrained: bool, weights: bool, input_shape: str | None,
    masks: tuple[tuple[int, int] | None, int] | None,
) -> tuple[list[GemmLayer], dict[str, LayerSparsity] | None]:
    """An ONNX model's layers and, with ``weights`` and ``masks`` = (N:M, B), its zeros' masks."""
    from accel_sim.onnx_lowering import lower_onnx

    if resolution is not None:
        raise UserError(f"--resolution: {source} is an ONNX model: give its input shape with "
                        "--input-shape (e.g. 1x3x224x224)")
    if checkpoint is not None or pretrained:
        flag = "--checkpoint" if checkpoint is not None else "--pretrained"
        raise UserError(f"{flag}: {source} is an ONNX model, whose weights are in the file; "
                        f"{flag} loads weights into a zoo model")
    layers = lower_onnx(source, input_shape, batch, weights=weights)
    if not weights or masks is None:
        return layers, None
    return layers, weight_sparsity(layers, *masks)


def _pruned_workload(path: str, batch: int) -> tuple[list[GemmLayer], dict[str, LayerSparsity]]:
    layers, descriptors = [], {}
    for stored in compressed_format.read_layers(path):
        layer = GemmLayer(name=stored.name, weight=stored.weight, **stored.geometry)
        layer = layer.batched(batch)
        layers.append(layer)
        scheme = stored.scheme if stored.scheme != "channel" else "dense"
        nm = (stored.n, stored.m) if scheme in ("nm", "hybrid") else (None, None)
        block = stored.b if scheme in ("block", "hybrid") else None
        descriptors[layer.name] = (LayerSparsity("dense") if scheme == "dense"
                                   else from_weight(layer, scheme, *nm, block))
    return layers, descriptors
