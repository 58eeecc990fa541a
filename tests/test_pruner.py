"""The iterative CRISP pruner: schedule, global threshold, exact masks, records, bad input."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from crisp.errors import UserError
from crisp.patterns import bitmap_of
from crisp.pruner import PruneConfig, plan_layers, prune, select_block_ranks
from crisp.schedule import default_density, paper_p, schedule
from crisp.train import TrainConfig


class Tiny(nn.Module):
    """Three convs (one depthwise) and a head, for 8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.conv = nn.Conv2d(16, 40, 3, padding=1, bias=False)  # K = 144: partial 32-blocks
        self.bn = nn.BatchNorm2d(40)
        self.fc = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw(torch.relu(self.stem(x))))
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _data(n: int = 32, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3 + 2  # user classes 2, 3, 4
    images = torch.randn(n, 3, 8, 8, generator=gen) + labels[:, None, None, None] * 0.3
    return TensorDataset(images, labels)


def _config(**kw: object) -> PruneConfig:
    base = {"scheme": "hybrid", "density": 0.3, "block": 8, "step": 0.3, "epochs": 1,
            "train": TrainConfig(batch_size=16)}
    return PruneConfig(**{**base, **kw})


def _model() -> nn.Module:
    torch.manual_seed(0)
    return Tiny()


def test_schedule_is_pure_and_ends_on_target() -> None:
    assert schedule(0.25, 0.5, 0.1) == [0.5, 0.45, 0.4, 0.35, 0.3, 0.25]
    assert schedule(0.6, 0.5, 0.1) == [0.5]
    steps = schedule(0.1, 0.5, 0.25)
    assert steps[-1] == 0.1 and all(a > b for a, b in itertools.pairwise(steps))
    assert [paper_p(k) for k in (1, 2, 3, 4, 10, 11)] == [0.4, 0.3, 0.3, 0.2, 0.2, 0.1]
    assert default_density(1, 2, 4) == pytest.approx(0.3)


def test_hybrid_masks_are_exact_balanced_and_recorded() -> None:
    result = prune(_model(), _data(), _data(seed=1), [2, 3, 4], _config())
    masks = result.masks
    assert set(masks) == {"conv.weight", "fc.weight"}  # stem and depthwise stay dense
    conv = masks["conv.weight"].reshape(40, -1)
    groups = torch.nn.functional.pad(conv, (0, 0)).reshape(40, -1, 4).sum(dim=2)
    assert (groups <= 2).all()
    bitmap = bitmap_of(conv, 8)
    assert (bitmap.sum(dim=1) == bitmap.sum(dim=1)[0]).all()  # balanced block-rows
    assert bitmap.shape == (5, math.ceil(144 / 8))
    head = masks["fc.weight"].reshape(10, -1, 4).sum(dim=2)
    assert (head == 2).all()  # classifier: N:M only
    weights = result.model.conv.weight.reshape(40, -1)
    assert (weights[~conv] == 0).all()
    rec = result.record
    assert rec["plan"]["stem"]["pattern"] == "dense"
    assert "first conv" in rec["plan"]["stem"]["reason"]
    assert "depthwise" in rec["plan"]["dw"]["reason"]
    assert rec["plan"]["fc"]["pattern"] == "nm"
    final = rec["rounds"][-1]
    assert final["density"] <= 0.3 + 1e-9 and final["density"] > 0.2
    densities = [r["layer_density"]["conv"] for r in rec["rounds"]]
    assert all(a >= b for a, b in itertools.pairwise(densities))  # only shrink
    json.dumps(rec, allow_nan=False)  # the record is plain JSON


def test_same_seed_same_masks_and_other_seed_differs() -> None:
    a = prune(_model(), _data(), _data(), [2, 3, 4], _config(), seed=3)
    b = prune(_model(), _data(), _data(), [2, 3, 4], _config(), seed=3)
    c = prune(_model(), _data(), _data(), [2, 3, 4], _config(), seed=4)
    assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert a.record["rounds"] == b.record["rounds"]
    assert any(not torch.equal(a.masks[k], c.masks[k]) for k in a.masks)


def test_global_threshold_takes_more_from_the_layer_that_matters_less() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(16, 64, generator=gen), "b": 0.01 * torch.rand(16, 64, generator=gen)}
    current = {k: torch.ones(16, 64, dtype=torch.bool) for k in scores}
    keep, threshold = select_block_ranks(scores, current, 8, budget=16 * 64)
    assert keep["a"] > keep["b"] >= 1
    assert sum(keep.values()) * 16 * 8 <= 16 * 64
    assert threshold <= float(scores["a"].sum())


def test_shrunk_head_and_other_mask_schemes() -> None:
    shrunk = prune(_model(), _data(), _data(), [2, 3, 4], _config(head="shrink"))
    assert shrunk.model.fc.out_features == 3
    assert shrunk.label_map.tolist()[2:5] == [0, 1, 2]
    for scheme in ("block", "unstructured", "nm"):
        result = prune(_model(), _data(), _data(), [2, 3, 4], _config(scheme=scheme))
        target = 0.3 if scheme != "nm" else result.record["schedule"][0]
        assert result.final["density"] <= target + 1e-9
        assert result.final["density"] > target - 0.1


def test_plan_is_configurable() -> None:
    plans = plan_layers(_model(), "hybrid", exclude_first=False, head_pattern="dense")
    assert plans["stem"].pattern == "hybrid" and plans["fc"].pattern == "dense"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"n": 4, "m": 4}, "N=4 must satisfy"),
        ({"m": 6}, "power of two"),
        ({"block": 0}, "block size = 0: allowed an integer in 1"),
        ({"block": 6}, "multiple of M=4"),
        ({"density": 0.0}, "density = 0.0: allowed"),
        ({"density": 1.5}, "density = 1.5: allowed"),
        ({"scheme": "magic"}, "scheme 'magic'"),
        ({"head": "half"}, "head 'half'"),
    ],
)
def test_bad_config_raises(kw: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        _config(**kw)


@pytest.mark.parametrize(("classes", "message"), [([], "empty"), ([3, 10], "out of range"),
                                                  ([2, 2], "repeats")])
def test_bad_classes_raise(classes: list[int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        prune(_model(), _data(), _data(), classes, _config())
