"""Masks that training respects: parametrized weights stay zero, masks only shrink, squash."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crisp import masks as mk
from crisp.errors import UserError
from crisp.patterns import nm_mask


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 5))


def _step(model: nn.Module, steps: int = 3) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(4, 3, 4, 4)).square().sum().backward()
        opt.step()


def test_masked_weights_stay_zero_and_get_zero_gradient() -> None:
    model = _net()
    mk.attach(model)
    w = mk.weight_matrix(model[0])
    mask = nm_mask(w.detach().abs(), 2, 4)
    mk.update(model, {"0.weight": mask})
    model(torch.randn(2, 3, 4, 4)).sum().backward()
    grad = mk.original(model, "0.weight").grad.reshape(mask.shape)
    assert (grad[~mask] == 0).all() and (grad[mask] != 0).any()
    _step(model)
    after = mk.weight_matrix(model[0]).detach()
    assert (after[~mask] == 0).all()
    assert not torch.signbit(after[~mask]).any()  # +0.0, never -0.0
    assert (after[mask] != 0).all()


def test_masks_only_shrink() -> None:
    model = _net()
    mk.attach(model, ["3.weight"])
    first = torch.rand(5, 128) > 0.5
    second = torch.rand(5, 128) > 0.5
    mk.update(model, {"3.weight": first})
    mk.update(model, {"3.weight": second})
    assert torch.equal(mk.get_masks(model)["3.weight"], first & second)
    assert list(mk.get_masks(model)) == ["3.weight"]


def test_squash_leaves_plain_weights_with_zeros() -> None:
    model = _net()
    mk.attach(model)
    mask = torch.rand(8, 27) > 0.3
    mk.update(model, {"0.weight": mask})
    _step(model)
    mk.squash(model)
    assert isinstance(model[0].weight, nn.Parameter)
    assert "0.weight" in model.state_dict() and not mk.get_masks(model)
    assert (mk.weight_matrix(model[0])[~mask] == 0).all()
    expected = (int(mask.sum()) + 5 * 128) / (8 * 27 + 5 * 128)
    assert mk.density(model) == pytest.approx(expected)


def test_bad_names_and_sizes_raise() -> None:
    model = _net()
    with pytest.raises(UserError, match="no Conv2d/Linear weight"):
        mk.attach(model, ["1.weight"])
    with pytest.raises(UserError, match="no mask attached"):
        mk.update(model, {"0.weight": torch.ones(8, 27, dtype=torch.bool)})
    mk.attach(model)
    with pytest.raises(UserError, match="entries"):
        mk.update(model, {"0.weight": torch.ones(3, dtype=torch.bool)})
