"""Baselines CRISP is compared against, all class-aware and at a matched global density.

- **unstructured**: the same score ``S = |W| * g`` with one global threshold over all prunable
  weights (`unstructured_masks`, through ``torch.nn.utils.prune.global_unstructured``); run
  by `crisp.pruner.prune` with ``scheme="unstructured"`` (same rounds and fine-tuning).
- **nm** and **block**: the two halves of the hybrid, run by `crisp.pruner.prune`.
- **channel** (`channel_prune`): torch-pruning's ``MetaPruner`` with a group Taylor
  importance computed on the user-class loss, removing channels physically (through residual
  dependencies); the classifier's outputs are never pruned. The uniform channel ratio is chosen
  by bisection so that the remaining Conv2d/Linear weights match the target density. In a
  vision transformer (a model with `attention_heads`) it removes head dimensions, MLP hidden
  units and residual-stream channels (see `_channel_pruner`).
- **dense** (`dense_finetune`): no pruning, fine-tuned on the user's classes for as many
  epochs as the hybrid run would take (rounds of ``schedule(target, n/m, step)`` times epochs per
  round), so every model sees the same user-class training; without distillation or
  recalibration, which only make up for pruning.

The two model-level baselines recover like every scheme (`crisp.finetune.Recovery`) and
return ``(model, rounds, extra)``: the model, one metrics dict per
round and extra record fields. This module does not import `crisp.pruner` (which dispatches
to it); both read their settings from `crisp.config`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from crisp import distributed
from crisp import masks as mk
from crisp.config import PruneConfig
from crisp.finetune import Recovery
from crisp.schedule import schedule
from crisp.train import user_batches

Rounds = list[dict[str, object]]


def unstructured_masks(
    scores: dict[str, torch.Tensor], current: dict[str, torch.Tensor], budget: int
) -> dict[str, torch.Tensor]:
    """Global unstructured masks keeping at most ``budget`` weights, best scores first.

    Args:
        scores: saliency ``[C_out, K]`` by weight name.
        current: current bool masks ``[C_out, K]``; already-pruned weights score 0 (the pruning
            method ranks by absolute value), so they go first and masks only shrink.
        budget: the most weights kept over all the given layers.
    """
    holders = {}
    for name, s in scores.items():
        holder = nn.Module()
        holder.weight = nn.Parameter(torch.zeros_like(s), requires_grad=False)
        holders[name] = holder
    total = sum(s.numel() for s in scores.values())
    torch_prune.global_unstructured(
        [(h, "weight") for h in holders.values()],
        pruning_method=torch_prune.L1Unstructured,
        importance_scores={
            (holders[n], "weight"): s.masked_fill(~current[n], 0.0) for n, s in scores.items()
        },
        amount=max(0, total - budget),
    )
    return {name: h.weight_mask.to(torch.bool) & current[name] for name, h in holders.items()}


def gemm_weights(model: nn.Module) -> int:
    """Number of Conv2d/Linear weights (structure size; zeros counted)."""
    return sum(m.weight.numel() for m in mk.gemm_layers(model).values())


def attention_heads(model: nn.Module) -> dict[nn.Linear, int]:
    """The attention layers of a vision transformer: each fused ``qkv`` Linear with its heads.

    An attention layer is a module with a ``qkv`` Linear (outputs ``[3, heads, head_dim]``)
    and an int ``heads``, as `crisp.models.ViTSmall`'s; empty for a CNN.
    """
    return {m.qkv: m.heads for m in model.modules()
            if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(
                getattr(m, "heads", None), int)}


#: Layers whose own parameters torch-pruning prunes through its registered pruners.
_WRAPPED = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def _loose_parameters(model: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """Parameters outside Conv2d/Linear/norm layers (a ViT's class token and position
    embedding), each with its channel dimension (the last), for torch-pruning's graph."""
    return [(p, p.dim() - 1) for m in model.modules() if not isinstance(m, _WRAPPED)
            for p in m.parameters(recurse=False)]


def _channel_pruner(
    model: nn.Module,
    example: torch.Tensor,
    ratio: float,
    steps: int,
    importance: tp.importance.Importance,
) -> tp.pruner.MetaPruner:
    """torch-pruning's uniform (per-group) channel pruner for ``model`` at ``ratio``.

    The classifier's outputs are never pruned. A vision transformer (`attention_heads` not
    empty) loses ``ratio`` of three widths, each uniform over the blocks:

    - the head dimensions: each attention keeps the same dimensions in all of its heads and in
      q, k and v together (torch-pruning's ``num_heads`` with ``prune_head_dims``); the head
      count stays, and `crisp.models.ViTSmall` reads the head width from ``qkv``. Whole heads
      are not removed: with 4 heads a block, one head is 25 % of its attention, too coarse for
      the density bisection of `channel_ratio`;
    - the MLP hidden units (``fc1`` outputs, ``fc2`` inputs);
    - the residual-stream width, one group through every residual add: the patch embedding's
      outputs, the class token, the position embedding, every LayerNorm, the ``qkv`` and
      ``fc1`` inputs, the ``proj`` and ``fc2`` outputs and the classifier's inputs. Keeping it
      would leave the patch embedding and the classifier whole and every block Linear at its
      full width on one side, a floor of 18 % density for ``vit_small`` (the benchmarks'
      ladders go to 4 %); pruning it too, the weights fall about as ``(1 - ratio)**2``, as in
      a CNN.
    """
    heads = attention_heads(model)
    ignored = [model.get_submodule(mk.classifier_name(model))]
    return tp.pruner.MetaPruner(
        model,
        example,
        importance=importance,
        pruning_ratio=ratio,
        iterative_steps=steps,
        ignored_layers=ignored,
        num_heads=heads,
        # fresh dicts: torch-pruning's defaults are shared between calls and it writes to them
        in_channel_groups={},
        out_channel_groups={},
        prune_head_dims=True,
        prune_num_heads=False,
        unwrapped_parameters=_loose_parameters(model),
    )


def max_ratio(model: nn.Module) -> float:
    """The largest uniform channel ratio `channel_ratio` tries: 0.99, or for a vision
    transformer ``1 - 1/head_dim`` (the smallest head width), the largest that leaves every head
    a dimension (beyond it torch-pruning would empty the heads, so it skips the attention groups
    and the density would jump back up)."""
    heads = attention_heads(model)
    if not heads:
        return 0.99
    return 1 - 1 / min(qkv.out_features // (3 * n) for qkv, n in heads.items())


def channel_ratio(
    model: nn.Module, example: torch.Tensor, density: float, iters: int = 14
) -> float:
    """The uniform channel pruning ratio leaving about ``density`` of the Conv2d/Linear weights.

    Bisection on copies pruned by magnitude (the structure only depends on the ratio) between
    0 and `max_ratio`; a density below what that ratio leaves gives `max_ratio` itself. For
    ``vit_small`` that floor is 1.1 % (the classifier's 100 outputs on a residual width of 4;
    each head keeps 1 of its 16 dimensions, each MLP 8 of its 128 units).
    """
    total = gemm_weights(model)
    lo, hi = 0.0, max_ratio(model)
    for _ in range(iters):
        mid = (lo + hi) / 2
        trial = copy.deepcopy(model)
        _channel_pruner(trial, example, mid, 1, tp.importance.GroupMagnitudeImportance()).step()
        if gemm_weights(trial) / total > density:
            lo = mid
        else:
            hi = mid
    return hi


def _round_metrics(
    t: int, goal: float, model: nn.Module, total: int, metrics: dict[str, object]
) -> dict[str, object]:
    return {"round": t, "target_density": goal, "density": round(gemm_weights(model) / total, 6),
            **metrics}


def channel_prune(
    model: nn.Module,
    recovery: Recovery,
    classes: list[int],
    config: PruneConfig,
) -> tuple[nn.Module, Rounds, dict[str, object]]:
    """Class-aware channel pruning to the target density in ``schedule(target, 1, step)`` rounds.

    Before each round the Taylor importance sees ``|W * dL/dW|`` summed over one pass of the
    user-class data; each round removes channels, then recovers (``recovery``: fine-tunes
    ``config.epochs`` epochs). The density is the remaining weights over the original ones.
    Under ``torchrun`` the gradients behind the importance are summed over the ranks before each
    step, so all ranks remove the same channels.
    """
    train_data, runtime = recovery.train, recovery.runtime
    model.eval()
    example = next(iter(user_batches(train_data, 1, torch.Generator().manual_seed(0), None,
                                     runtime, shard=False)))[0]
    target = config.target(len(classes))
    densities = schedule(target, 1.0, config.step)[1:] or [1.0]
    total = gemm_weights(model)
    ratio = channel_ratio(model, example, target)
    pruner = _channel_pruner(model, example, ratio, len(densities),
                             tp.importance.GroupTaylorImportance())
    rounds = []
    for t, goal in enumerate(densities):
        model.eval()
        model.zero_grad(set_to_none=True)
        batches = user_batches(train_data, config.batch_size_grad, recovery.generator,
                               recovery.label_map, runtime)
        for images, labels in batches:
            F.cross_entropy(model(images), labels).backward()
        distributed.all_reduce_grads(model)
        pruner.step()
        model.zero_grad(set_to_none=True)
        metrics = recovery.round(model, t, f"channel round {t}/{len(densities) - 1}")
        rounds.append(_round_metrics(t, goal, model, total, metrics))
    extra = {"schedule": densities, "channel_ratio": ratio,
             "layer_shapes": {n: list(m.weight.shape) for n, m in mk.gemm_layers(model).items()}}
    return model, rounds, extra


def dense_epochs(config: PruneConfig, num_classes: int) -> int:
    """Fine-tuning epochs of the dense baseline: what a hybrid run with ``config`` would take."""
    rounds = schedule(config.target(num_classes), config.n / config.m, config.step)
    return config.epochs * len(rounds)


def dense_finetune(
    model: nn.Module,
    recovery: Recovery,
    classes: list[int],
    config: PruneConfig,
) -> tuple[nn.Module, Rounds, dict[str, object]]:
    """The dense model fine-tuned on the user's classes for `dense_epochs` epochs, with the
    batches and validation of every scheme but neither recalibration nor distillation (nothing
    is pruned: `crisp.finetune.Recovery.round` with ``pruned=False`` says why)."""
    epochs = dense_epochs(config, len(classes))
    total = gemm_weights(model)
    metrics = recovery.round(model, 0, "dense fine-tune", epochs=epochs, pruned=False)
    rounds = [_round_metrics(0, 1.0, model, total, metrics)]
    return model, rounds, {"schedule": [1.0], "epochs": epochs}
