"""The small vision transformer: builds, runs, exports, and every scheme prunes its Linears."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import TensorDataset

from crisp import masks as mk
from crisp.baselines import (
    _channel_pruner,
    attention_heads,
    channel_ratio,
    gemm_weights,
    max_ratio,
)
from crisp.cli import CHECKPOINTS, committed_checkpoint, resize_to_state
from crisp.models import SMALL_MODELS, ViTSmall, build_model, input_shape
from crisp.pruner import PruneConfig, plan_layers, prune
from crisp.train import TrainConfig


@functools.cache
def _vit() -> nn.Module:
    torch.manual_seed(0)
    return build_model("vit_small", num_classes=10).eval()


def _data(n: int = 12, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3 + 2  # user classes 2, 3, 4
    images = torch.randn(n, 3, 32, 32, generator=gen) + labels[:, None, None, None] * 0.3
    return TensorDataset(images, labels)


def _config(scheme: str) -> PruneConfig:
    # one pruning round each (two for hybrid: its N:M round, then the blocks)
    return PruneConfig(scheme=scheme, density=0.3, block=16, step=0.7, epochs=1,
                       train=TrainConfig(batch_size=8))


def _export(model: nn.Module) -> None:
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))


def test_vit_small_builds_runs_and_exports() -> None:
    model = _vit()
    assert "vit_small" in SMALL_MODELS and input_shape("vit_small") == (3, 32, 32)
    full = build_model("vit_small")
    assert full.head.out_features == 100  # the default, as the other small nets
    assert sum(p.numel() for p in full.parameters()) == 157092
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    layers = mk.gemm_layers(model)
    assert next(iter(layers)) == "patch_embed" and mk.classifier_name(model) == "head"
    assert {n for n, m in layers.items() if isinstance(m, nn.Conv2d)} == {"patch_embed"}
    assert sum(isinstance(m, nn.Linear) for m in layers.values()) == 4 * 4 + 1
    # 4 blocks of qkv 64x192, proj 64x64, fc1 64x128, fc2 128x64, 8x8 patch windows, the head
    assert gemm_weights(model) == 4 * (3 + 1 + 2 + 2) * 64 * 64 + 64 * 192 + 10 * 64 == 144000
    assert model.patch_embed(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 8, 8)  # 64 tokens
    assert attention_heads(model) == {b.attn.qkv: 4 for b in model.blocks}
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    _export(model)


def test_vit_rejects_a_width_its_heads_do_not_divide() -> None:
    with pytest.raises(ValueError, match="not a multiple of 3 heads"):
        ViTSmall(dim=128, heads=3)


@pytest.mark.parametrize("scheme", ["hybrid", "nm", "block", "unstructured"])
def test_every_mask_scheme_prunes_the_vit_linears_to_the_target(scheme: str) -> None:
    model = _vit()
    result = prune(model, _data(), _data(seed=1), [2, 3, 4], _config(scheme))
    plans = plan_layers(model, scheme)
    assert plans["patch_embed"].pattern == "dense"  # the first conv
    assert plans["blocks.0.attn.qkv"].pattern == scheme  # every block Linear gets the scheme
    assert plans["blocks.3.mlp.fc2"].pattern == scheme
    assert "classifier" in plans["head"].reason
    masked = {n.removesuffix(".weight") for n in result.masks}
    assert masked == {n for n, p in plans.items() if p.pattern != "dense"}
    target = result.record["schedule"][0] if scheme == "nm" else 0.3
    density = result.final["density"]
    assert target - 0.05 < density <= target + 1e-6  # the record rounds to 6 digits
    assert mk.density(result.model) == pytest.approx(density, abs=1e-6)
    if scheme in ("hybrid", "nm"):  # 2:4 along K = in_features
        qkv = result.masks["blocks.0.attn.qkv.weight"]
        assert (qkv.reshape(192, -1, 4).sum(dim=2) <= 2).all()
    _export(result.model.eval())


def test_channel_pruning_shrinks_head_dims_mlp_units_and_the_residual_width() -> None:
    model = _vit()
    config = PruneConfig(scheme="channel", density=0.4, step=0.7, epochs=1,
                         train=TrainConfig(batch_size=8))
    with warnings.catch_warnings():
        # the class token and position embedding are declared to torch-pruning, not guessed
        warnings.filterwarnings("error", message="Unwrapped parameters")
        result = prune(model, _data(), _data(seed=1), [2, 3, 4], config)
    pruned = result.model.eval()
    assert pruned.head.out_features == 10  # the classifier's outputs are never pruned
    width = pruned.patch_embed.out_channels
    assert width < 64 and pruned.head.in_features == width
    assert pruned.pos_embed.shape == (1, 65, width) and pruned.cls_token.shape == (1, 1, width)
    assert pruned.norm.normalized_shape == (width,)
    for block in pruned.blocks:
        attn, mlp = block.attn, block.mlp
        assert attn.heads == 4 and attn.qkv.out_features % 12 == 0  # same width in every head
        assert attn.qkv.out_features < 192 and attn.proj.in_features == attn.qkv.out_features // 3
        assert attn.qkv.in_features == attn.proj.out_features == width
        assert mlp.fc1.out_features == mlp.fc2.in_features < 128
        assert mlp.fc1.in_features == mlp.fc2.out_features == width
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    density = gemm_weights(pruned) / gemm_weights(model)
    assert density == pytest.approx(result.final["density"], abs=1e-6)
    assert 0.35 < density <= 0.42
    _export(pruned)
    # crisp eval's way back from a model.pt: resize to the state, then load (a fresh model:
    # _vit's is shared)
    rebuilt = build_model("vit_small", num_classes=10).eval()
    resize_to_state(rebuilt, pruned.state_dict())
    rebuilt.load_state_dict(pruned.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt.eval()(x), pruned(x))


def _tag(values: torch.Tensor, *tensors: torch.Tensor) -> None:
    """Fill each tensor with ``values`` along its last dimension."""
    for t in tensors:
        t.copy_(values.expand_as(t))


def test_channel_pruning_removes_the_same_channels_everywhere() -> None:
    """Head dimensions go in q, k and v of every head alike; residual channels go in every
    tensor of the residual stream alike (each tagged with its channel index, then compared)."""
    model = build_model("vit_small", num_classes=10).eval()
    width = torch.arange(64.0)
    with torch.no_grad():
        _tag(width, model.patch_embed.bias, model.cls_token, model.pos_embed, model.norm.weight,
             model.head.weight)
        for block in model.blocks:
            _tag(width, block.norm1.weight, block.norm2.bias, block.attn.proj.bias,
                 block.mlp.fc2.bias, block.attn.qkv.weight, block.mlp.fc1.weight)
            block.attn.qkv.bias.copy_(torch.arange(192.0))
    _channel_pruner(model, torch.randn(1, 3, 32, 32), 0.5, 1,
                    tp.importance.GroupMagnitudeImportance()).step()
    kept = model.patch_embed.bias.tolist()
    assert len(kept) == 32
    stream = [model.cls_token[0, 0], model.pos_embed[0, 7], model.norm.weight, model.head.weight[3]]
    for block in model.blocks:
        stream += [block.norm1.weight, block.norm2.bias, block.attn.proj.bias, block.mlp.fc2.bias,
                   block.attn.qkv.weight[5], block.mlp.fc1.weight[2]]
        q, k, v = block.attn.qkv.bias.reshape(3, 4, -1)  # [q/k/v, head, dimension]
        dims = q[0] % 16
        assert len(dims) == 8
        for part, offset in ((q, 0), (k, 64), (v, 128)):
            for h in range(4):
                assert torch.equal(part[h], dims + offset + 16 * h)
    for t in stream:
        assert t.tolist() == kept


def test_channel_ratio_stops_where_every_head_keeps_a_dimension() -> None:
    model = _vit()
    assert max_ratio(model) == 1 - 1 / 16
    floor = channel_ratio(model, torch.randn(1, 3, 32, 32), 0.001, iters=2)
    assert floor == max_ratio(model)  # below the floor: the largest ratio


@pytest.mark.parametrize("data", ["glyph100", "glyph100-hard"])
def test_committed_checkpoints_fit_vit_small(data: str) -> None:
    path = CHECKPOINTS / f"vit_small_{data}.pt"
    model = build_model("vit_small", checkpoint=path).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 100)
    assert committed_checkpoint("vit_small", data, 0) == path
