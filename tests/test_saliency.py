"""Class-aware saliency: S = |W| * mean |dL/dW| on user-class data only."""

from __future__ import annotations

import torch
from torch import nn

from crisp import masks as mk
from crisp.saliency import GradientMeter, gradient_pass, saliency


def _batches(label: int, feature: int, count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(label)
    out = []
    for _ in range(count):
        x = 0.01 * torch.randn(8, 4, generator=gen)
        x[:, feature] += 1.0
        out.append((x, torch.full((8,), label)))
    return out


def test_weight_for_the_user_class_outranks_an_equal_weight_for_another() -> None:
    # Class 0 images light up feature 0, class 1 images feature 1. Weights W[0,0] and W[1,1] are
    # equally large; on class-0 data only the first one matters.
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0]]))
    meter = GradientMeter(model)
    gradient_pass(model, _batches(label=0, feature=0), meter)
    s = saliency(model, meter.mean())["0.weight"]
    assert s[0, 0] > 10 * s[1, 1]
    # On class-1 data the ranking flips: the score depends on the user's classes.
    meter.reset()
    gradient_pass(model, _batches(label=1, feature=1), meter)
    s = saliency(model, meter.mean())["0.weight"]
    assert s[1, 1] > 10 * s[0, 0]


def test_score_is_abs_weight_times_mean_abs_gradient_and_zero_when_masked() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    batches = _batches(label=2, feature=3, count=3)
    grads = []
    for x, y in batches:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        grads.append(model[0].weight.grad.abs().clone())
    expected = model[0].weight.detach().abs() * torch.stack(grads).mean(dim=0)
    meter = GradientMeter(model)
    gradient_pass(model, batches, meter)
    torch.testing.assert_close(saliency(model, meter.mean())["0.weight"], expected)
    mk.attach(model)
    mask = torch.rand(3, 4) > 0.5
    mk.update(model, {"0.weight": mask})
    meter = GradientMeter(model)
    gradient_pass(model, batches, meter)
    assert (saliency(model, meter.mean())["0.weight"][~mask] == 0).all()
    assert (meter.mean()["0.weight"][~mask] == 0).all()  # masked weights get zero gradient
