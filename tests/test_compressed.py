"""The compressed format: bit-exact round trips, sizes, and one clear error per bad file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn

from crisp import compressed
from crisp.errors import UserError
from crisp.patterns import block_mask, hybrid_mask, nm_mask

INT_VIEW = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}


def _mask(scheme: str, s: torch.Tensor, n: int, m: int, b: int, keep: int,
          drop: torch.Tensor) -> torch.Tensor:
    if scheme == "hybrid":
        return hybrid_mask(s, b, keep, n, m) & drop
    if scheme == "nm":
        return nm_mask(s, n, m) & drop
    if scheme == "block":
        return block_mask(s, b, keep) & drop
    return drop


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 24), k=st.integers(1, 50), m=st.sampled_from([2, 4, 8, 16]),
       scheme=st.sampled_from(["hybrid", "nm", "block", "unstructured", "dense"]),
       dtype=st.sampled_from(["float16", "bfloat16", "float32"]), data=st.data())
def test_round_trip_is_bit_exact(tmp_path: Path, rows, k, m, scheme, dtype, data) -> None:
    n = data.draw(st.integers(1, m - 1))
    b = m * data.draw(st.integers(1, 3))
    keep = data.draw(st.integers(1, math.ceil(k / b)))
    seed = data.draw(st.integers(0, 1000))
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(k, rows))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(rows, k, generator=gen))
    s = torch.rand(rows, k, generator=gen)
    drop = torch.rand(rows, k, generator=gen) > data.draw(st.sampled_from([0.0, 0.3]))
    mask = _mask(scheme, s, n, m, b, keep, drop) if scheme != "dense" else torch.ones_like(drop)
    path = tmp_path / f"x{seed}.safetensors"
    sizes = compressed.save(model, path, {"1.weight": mask}, {"1": scheme}, n, m, b, (k,),
                            dtype=dtype)
    stored = compressed.DTYPES[dtype]
    expected = torch.where(mask, model[1].weight.detach().to(stored), 0.0)
    got = compressed.read_weights(path)["1.weight"]
    assert got.dtype == stored
    assert torch.equal(got.view(INT_VIEW[stored]), expected.view(INT_VIEW[stored]))
    [layer] = compressed.read_layers(path)
    assert layer.weight.shape == (rows, k) and layer.scheme == scheme
    assert (layer.weight == expected.float().numpy()).all()
    assert layer.geometry["P"] == 1 and layer.geometry["K"] == k and layer.geometry["N"] == rows
    assert sizes["total_bytes"] == path.stat().st_size
    assert compressed.read_state_dict(path)["1.bias"].equal(model[1].bias.detach())


def _conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 10))


def _save_hybrid(tmp_path: Path) -> tuple[Path, nn.Module, torch.Tensor]:
    model = _conv_model()
    w = model[3].weight.detach().reshape(64, -1)
    mask = hybrid_mask(w.abs(), 16, 5, 2, 4)
    head = nm_mask(model[6].weight.detach().abs(), 2, 4)
    with torch.no_grad():
        model[3].weight.mul_(mask.reshape(model[3].weight.shape))
        model[6].weight.mul_(head)
    path = tmp_path / "m.safetensors"
    compressed.save(model, path, {"3.weight": mask, "6.weight": head}, {"3": "hybrid", "6": "nm"},
                    2, 4, 16,
                    (3, 16, 16), meta={"model": "toy"})
    return path, model, mask


def test_conv_model_geometry_sizes_and_rebuild(tmp_path: Path) -> None:
    path, model, mask = _save_hybrid(tmp_path)
    layers = compressed.read_layers(path)
    assert [la.name for la in layers] == ["0", "3", "6"]
    conv = layers[1]
    assert conv.geometry["P"] == 8 * 8 and conv.geometry["K"] == 32 * 9
    assert conv.geometry["stride"] == (1, 1) and conv.geometry["in_shape"] == (1, 32, 8, 8)
    assert conv.shape == (64, 32, 3, 3) and (conv.n, conv.m, conv.b) == (2, 4, 16)
    sizes = compressed.size_breakdown(path)
    kept = int(mask.sum())
    assert sizes["offsets_bytes"] == math.ceil(kept * 2 / 8) + math.ceil(10 * 32 * 2 / 8)
    assert sizes["bitmap_bytes"] == math.ceil(4 * 18 / 8)
    assert sizes["total_bytes"] < sizes["dense_bytes"]
    rebuilt = _conv_model()
    rebuilt.load_state_dict(compressed.read_state_dict(path))
    model.eval()
    rebuilt.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(rebuilt(x), model(x), atol=2e-2, rtol=2e-2)  # fp16 weights


def _rewrite(path: Path, header_fn=None, tensors_fn=None) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["crisp"])
    tensors = load_file(str(path))
    if header_fn:
        header_fn(header)
    if tensors_fn:
        tensors_fn(tensors)
    save_file(tensors, str(path), metadata={"crisp": json.dumps(header)})


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "corrupt or truncated"),
        (lambda p: p.write_bytes(b"not a safetensors file at all"), "corrupt or truncated"),
        (lambda p: save_file({"x": torch.zeros(1)}, str(p)), "no 'crisp' header"),
        (lambda p: save_file({"x": torch.zeros(1)}, str(p), metadata={"crisp": "{bad"}),
         "bad JSON header"),
        (lambda p: _rewrite(p, lambda h: h.update(version=99)), "unknown format version 99"),
        (lambda p: _rewrite(p, tensors_fn=lambda t: t.update({"3.values": t["3.values"][:-1]})),
         "entries, the header says"),
        (lambda p: _rewrite(p, tensors_fn=lambda t: t.pop("3.offsets")), "'3.offsets' is missing"),
        (lambda p: _rewrite(p, tensors_fn=lambda t: t.update({"3.bitmap": t["3.bitmap"][:1]})),
         "bitmap has 1 bytes"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, breaker, message: str) -> None:
    path, _, _ = _save_hybrid(tmp_path)
    breaker(path)
    with pytest.raises(UserError, match=message):
        compressed.read_layers(path)


def test_missing_file_and_bad_masks_raise(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        compressed.read_layers(tmp_path / "none.safetensors")
    model = nn.Sequential(nn.Linear(8, 4))
    dense = torch.ones(4, 8, dtype=torch.bool)
    with pytest.raises(UserError, match="not an 2:4 mask"):
        compressed.save(model, tmp_path / "x.safetensors", {"0.weight": dense}, {"0": "nm"},
                        2, 4, 4, (8,))
    with pytest.raises(UserError, match="multiple of M=4"):
        compressed.save(model, tmp_path / "x.safetensors", {}, {"0": "hybrid"}, 2, 4, 6, (8,))
    assert not (tmp_path / "x.safetensors").exists()
