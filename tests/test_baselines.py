"""Baselines: channel pruning through residual connections, dense fine-tuning, unstructured."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from crisp.baselines import dense_epochs, gemm_weights, unstructured_masks
from crisp.models import ResNetSmall
from crisp.pruner import PruneConfig, prune
from crisp.train import TrainConfig


def _data(n: int = 16) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 16, 16, generator=gen), torch.arange(n) % 2 + 5)


def test_channel_pruning_removes_channels_through_a_residual_net() -> None:
    torch.manual_seed(0)
    model = ResNetSmall(num_classes=10, widths=(8, 16, 16, 32))
    config = PruneConfig(scheme="channel", density=0.4, step=0.5, epochs=1,
                         train=TrainConfig(batch_size=8))
    result = prune(model, _data(), _data(), [5, 6], config)
    pruned = result.model
    assert pruned.stages[3].conv2.out_channels < 32
    # The residual add forces the shortcut and the block's output to keep the same channels.
    assert pruned.stages[3].shortcut[0].out_channels == pruned.stages[3].conv2.out_channels
    assert pruned.fc.out_features == 10  # the classifier's outputs are never pruned
    assert pruned(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    density = gemm_weights(pruned) / gemm_weights(model)
    assert density == pytest.approx(result.final["density"], abs=1e-6)
    assert 0.3 < density <= 0.45
    assert len(result.record["rounds"]) == 2


def test_dense_baseline_trains_as_long_as_the_hybrid() -> None:
    config = PruneConfig(scheme="dense", density=0.25, step=0.1, epochs=2)
    assert dense_epochs(config, 5) == 2 * len([0.5, 0.45, 0.4, 0.35, 0.3, 0.25])
    torch.manual_seed(0)
    model = ResNetSmall(num_classes=10, widths=(8, 8, 8, 8))
    small = PruneConfig(scheme="dense", density=0.5, step=0.5, epochs=1,
                        train=TrainConfig(batch_size=8))
    result = prune(model, _data(), _data(), [5, 6], small)
    assert result.record["epochs"] == 1 and result.final["density"] == 1.0


def test_unstructured_masks_keep_the_best_scores_and_only_shrink() -> None:
    scores = {"a": torch.tensor([[0.9, 0.1, 0.5, 0.7]]), "b": torch.tensor([[0.8, 0.2]])}
    current = {"a": torch.tensor([[False, True, True, True]]), "b": torch.ones(1, 2).bool()}
    masks = unstructured_masks(scores, current, budget=3)
    assert masks["a"].tolist() == [[False, False, True, True]]  # 0.9 was pruned before
    assert masks["b"].tolist() == [[True, False]]
