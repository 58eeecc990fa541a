"""The compressed format: bit-exact round trips, sizes, and one clear error per bad file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from safetensors.torch import save as serialize
from torch import nn

from crisp import compressed
from crisp import compressed_format as fmt
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


def _rewrite(path: Path, header_fn=None, tensors_fn=None, sign: bool = True) -> None:
    """Edit a file's header and tensors; ``sign``: then make its checksum match (a forged
    file, which only the checks other than the checksum can refuse)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["crisp"])
    tensors = load_file(str(path))
    if header_fn:
        header_fn(header)
    if tensors_fn:
        tensors_fn(tensors)
    if sign and "checksum" in header:
        header["checksum"] = fmt.checksum_of(serialize(tensors, {"crisp": json.dumps(header)}))
    save_file(tensors, str(path), metadata={"crisp": json.dumps(header)})


def _layer(name: str):
    """``header_fn`` helper: ``_layer("3")(h)`` is layer 3's entry of header ``h``."""
    return lambda h: next(e for e in h["layers"] if e["name"] == name)


def _edit_offsets(name: str, edit):
    """``tensors_fn`` that rewrites layer ``name``'s 2:4 slot positions with ``edit(array)``."""

    def tensors_fn(t: dict[str, torch.Tensor]) -> None:
        count = t[f"{name}.values"].numel()
        offsets = fmt.unpack_offsets(t[f"{name}.offsets"].numpy(), count, 4, name).copy()
        edit(offsets)
        t[f"{name}.offsets"] = torch.from_numpy(fmt.pack_offsets(offsets, 4))

    return tensors_fn


def _edit_bitmap(name: str, bits: int, edit):
    """``tensors_fn`` that rewrites layer ``name``'s block bitmap with ``edit(bool array)``."""

    def tensors_fn(t: dict[str, torch.Tensor]) -> None:
        bitmap = np.unpackbits(t[f"{name}.bitmap"].numpy())[:bits].astype(bool)
        edit(bitmap)
        t[f"{name}.bitmap"] = torch.from_numpy(fmt.pack_bits(bitmap))

    return tensors_fn


def _flip_value(t: dict[str, torch.Tensor]) -> None:
    t["3.values"] = t["3.values"].clone()
    t["3.values"].view(torch.int16)[7] ^= 1


def _move_block(bitmap: np.ndarray) -> None:
    """Move a kept block from block-row 0 to block-row 1 (18 blocks per row): the count stays."""
    bitmap[np.flatnonzero(bitmap[:18])[0]] = False
    bitmap[18 + np.flatnonzero(~bitmap[18:36])[0]] = True


def _version_1(h: dict) -> None:
    """A header as version 1 wrote it: no checksum, no blocks_per_row, no dense_gemms."""
    h.update(version=1)
    del h["checksum"]
    del h["dense_gemms"]
    for e in h["layers"]:
        e.pop("blocks_per_row", None)


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "corrupt or truncated"),
        (lambda p: p.write_bytes(b"not a safetensors file at all"), "corrupt or truncated"),
        (lambda p: save_file({"x": torch.zeros(1)}, str(p)), "no 'crisp' header"),
        (lambda p: save_file({"x": torch.zeros(1)}, str(p), metadata={"crisp": "{bad"}),
         "bad JSON header"),
        (lambda p: save_file({"x": torch.zeros(1)}, str(p),
                             metadata={"crisp": "[" * 10**5 + "]" * 10**5}),
         "bad JSON header .*recursion"),
        (lambda p: _rewrite(p, lambda h: h.update(version=99)), "unknown format version 99"),
        (lambda p: _rewrite(p, tensors_fn=lambda t: t.update({"3.values": t["3.values"][:-1]})),
         r"tensor 3.values shape = \[2559\]: allowed \[2560\]"),
        (lambda p: _rewrite(p, tensors_fn=lambda t: t.pop("3.offsets")), "'3.offsets' is missing"),
        (lambda p: _rewrite(p, tensors_fn=lambda t: t.update({"3.bitmap": t["3.bitmap"][:1]})),
         r"tensor 3.bitmap shape = \[1\]: allowed \[9\]"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, breaker, message: str) -> None:
    path, _, _ = _save_hybrid(tmp_path)
    breaker(path)
    with pytest.raises(UserError, match=message):
        compressed.read_layers(path)


# Every kind of input the fuzzers (benchmarks/fuzz_compressed.py) found accepted, or crashing
# the reader, before version 2: (name, header_fn, tensors_fn, sign, message). ``sign``: the
# checksum made to match, so the check named in the message is the one that refuses it.
REGRESSIONS = [
    ("offset-duplicate", None, _edit_offsets("3", lambda o: o.__setitem__(1, o[0])), True,
     r"layer 3: row 0 group \d+ has offsets \[(\d), \1\]: allowed strictly increasing"),
    ("offset-unordered", None, _edit_offsets("6", lambda o: o.__setitem__(slice(0, 2), o[1::-1])),
     True, "layer 6: row 0 group 0 has offsets .*: allowed strictly increasing"),
    ("offset-flip", None, _edit_offsets("6", lambda o: o.__setitem__(0, o[0] ^ 1)), False,
     "is corrupted: its header or tensors do not match the header's checksum"),
    ("bitmap-unbalanced", None, _edit_bitmap("3", 72, _move_block), True,
     r"layer 3: block-row 0 keeps 4 blocks: allowed 5 \(the header's blocks_per_row\)"),
    ("bitmap-count", None, _edit_bitmap("3", 72, lambda b: b.__setitem__(0, ~b[0])), True,
     "block-row 0 keeps"),
    ("value-flip", None, _flip_value, False, "is corrupted"),
    ("b-40000", lambda h: _layer("3")(h).update(b=40000), None, True,
     "layer 3: b = 40000: allowed an integer in 1..1024"),
    ("b-1e6-counts-agree",
     lambda h: _layer("3")(h).update(b=10**6, counts={**_layer("3")(h)["counts"],
                                                      "bitmap_bits": 1}),
     None, True, "layer 3: b = 1000000: allowed an integer in 1..1024"),
    ("b-not-multiple-of-m", lambda h: _layer("3")(h).update(b=6), None, True,
     "layer 3: b = 6: allowed a multiple of m = 4"),
    ("P-64-to-8", lambda h: _layer("3")(h)["geometry"].update(P=8), None, True,
     r"layer 3: geometry.P = 8: allowed 64 \(batch \* H_out \* W_out"),
    ("out-shape", lambda h: _layer("3")(h)["geometry"].update(out_shape=[1, 64, 4, 4]), None,
     True, r"geometry.out_shape\[2\] = 4: allowed 8"),
    ("K-vs-shape", lambda h: _layer("3")(h).update(shape=[64, 16, 3, 3]), None, True,
     "layer 3: K = 288: allowed 144"),
    ("groups", lambda h: _layer("0")(h)["geometry"].update(groups=2), None, True,
     r"layer 0: geometry.N \* groups = 64: allowed 32"),
    ("layer-duplicated", lambda h: h["layers"].append(h["layers"][1]), None, True,
     "layer 3 appears twice: allowed unique layer names"),
    ("layer-dropped", lambda h: h["layers"].pop(1), None, True,
     "tensor '3.bitmap' belongs to no layer of the header"),
    ("layer-renamed", lambda h: _layer("3")(h).update(name="3x"), None, True,
     "tensor '3x.values' is missing"),
    ("layers-reordered", lambda h: h["layers"].reverse(), None, False, "is corrupted"),
    ("n-zero", lambda h: _layer("6")(h).update(n=0), None, True,
     "layer 6: n = 0: allowed an integer in 1..3"),
    ("m-three", lambda h: _layer("6")(h).update(m=3), None, True,
     "layer 6: m = 3: allowed 2, 4, 8 or 16"),
    ("count-string", lambda h: _layer("6")(h)["counts"].update(values="320"), None, True,
     "layer 6: counts.values = '320': allowed an integer >= 0"),
    ("count-wrong", lambda h: _layer("6")(h)["counts"].update(offsets=319), None, True,
     r"layer 6: counts.offsets = 319: allowed 320 \(from the shape, n, m, b\)"),
    ("rows-float", lambda h: _layer("6")(h).update(rows=10.0), None, True,
     "layer 6: rows = 10.0: allowed an integer >= 1"),
    ("rows-negative", lambda h: _layer("6")(h).update(rows=-1), None, True,
     "layer 6: rows = -1: allowed an integer >= 1"),
    ("geometry-null-P", lambda h: _layer("0")(h)["geometry"].update(P=None), None, True,
     "layer 0: geometry.P = None: allowed an integer >= 1"),
    ("geometry-list", lambda h: _layer("0")(h).update(geometry=[]), None, True,
     r"layer 0: geometry = \[\]: allowed a JSON object"),
    ("missing-key", lambda h: _layer("0")(h).pop("rows"), None, True,
     "layer 0 lacks the field 'rows'"),
    ("scheme-unknown", lambda h: _layer("0")(h).update(scheme="channel"), None, True,
     "layer 0: scheme 'channel': allowed hybrid, nm, block, unstructured, dense"),
    ("dtype-unknown", lambda h: h.update(dtype="float64"), None, True,
     "unknown dtype 'float64': allowed float16, bfloat16, float32"),
    ("dtype-other", lambda h: h.update(dtype="float32"), None, True,
     "tensor 0.weight dtype = 'F16': allowed 'F32'"),
    ("version-string", lambda h: h.update(version="2"), None, True,
     "unknown format version '2': allowed 1, 2, 3"),
    ("version-1-with-checksum", lambda h: h.update(version=1), None, False,
     "header has the unknown field 'checksum'"),
    ("version-1-offsets", _version_1, _edit_offsets("6", lambda o: o.__setitem__(1, o[0])),
     False, "layer 6: row 0 group 0 has offsets"),
    ("checksum-edited", lambda h: h.update(checksum="sha256:" + "0" * 64), None, False,
     "is corrupted"),
    ("checksum-missing", lambda h: h.pop("checksum"), None, False,
     "header lacks the field 'checksum'"),
    ("k-order", lambda h: h.update(k_order="(kh, kw, C_in)"), None, True, "k_order = "),
    ("no-layers", lambda h: h.update(layers=[]), None, True,
     r"layers = \[\]: allowed a non-empty list"),
    ("layer-not-object", lambda h: h["layers"].append(7), None, True,
     r"layers\[3\] = 7: allowed a JSON object"),
    ("name-newline", lambda h: _layer("0")(h).update(name="0\nx"), None, True,
     r"layers\[0\].name = '0\\nx': allowed a printable name"),
]


@pytest.mark.parametrize(("header_fn", "tensors_fn", "sign", "message"),
                         [r[1:] for r in REGRESSIONS], ids=[r[0] for r in REGRESSIONS])
def test_fuzzer_findings_are_one_line_errors(tmp_path: Path, header_fn, tensors_fn, sign: bool,
                                             message: str) -> None:
    path, _, _ = _save_hybrid(tmp_path)
    _rewrite(path, header_fn, tensors_fn, sign)
    with pytest.raises(UserError, match=message) as err:
        compressed.read_layers(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_version_1_files_read_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, _, _ = _save_hybrid(tmp_path)
    expected = compressed.read_layers(path)
    _rewrite(path, _version_1)
    for _ in range(2):
        layers = compressed.read_layers(path)
    assert [la.weight.tobytes() for la in layers] == [la.weight.tobytes() for la in expected]
    note = capsys.readouterr().err
    assert note == (f"note: {path} is crisp-compressed version 1 (no checksum): re-save it with "
                    "crisp prune to get corruption detection\n")  # once per file


def test_tail_group_offsets_stay_inside_the_group(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(6, 4))
    path = tmp_path / "tail.safetensors"
    compressed.save(model, path, {"0.weight": nm_mask(model[0].weight.abs(), 2, 4)}, {"0": "nm"},
                    2, 4, 4, (6,))
    _rewrite(path, tensors_fn=_edit_offsets("0", lambda o: o.__setitem__(slice(2, 4), [2, 3])))
    with pytest.raises(UserError, match=r"row 0 group 1 has offsets \[2, 3\]: allowed positions "
                                        r"below the group's length \(0..1, M=4\)"):
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


def test_weights_bounded_by_the_file_size_before_decoding(tmp_path: Path) -> None:
    """A forged header that makes 16 bitmap bits stand for 2**28 weights is refused unread."""
    model = nn.Sequential(nn.Linear(8, 8))
    path = tmp_path / "sparse.safetensors"
    compressed.save(model, path, {"0.weight": torch.zeros(8, 8, dtype=torch.bool)},
                    {"0": "block"}, 2, 4, 8, (8,))
    side = 4 * fmt.MAX_BLOCK

    def grow(h: dict) -> None:
        h["layers"][0].update(shape=[side, side], rows=side, K=side, b=fmt.MAX_BLOCK,
                              counts={"values": 0, "bitmap_bits": 16}, blocks_per_row=0)
        h["layers"][0]["geometry"].update(K=side, N=side, in_shape=[1, side], out_shape=[1, side])

    _rewrite(path, grow, lambda t: t.update({"0.bitmap": torch.zeros(2, dtype=torch.uint8)}))
    with pytest.raises(UserError, match=f"the layers hold {side * side} weights: allowed at most "
                                        "1024 per byte of the file"):
        compressed.read_layers(path)


class _Attention(nn.Module):
    """Linear layers and attention between them: the file keeps the attention's GEMMs."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(8, 24), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, T, 8]
        q, k, v = self.qkv(x).reshape(*x.shape[:2], 3, 2, 4).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(x.shape))


def _save_attention(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "att.safetensors"
    model = _Attention()
    mask = nm_mask(model.proj.weight.detach().abs(), 2, 4)
    compressed.save(model, path, {"proj.weight": mask}, {"proj": "nm"}, 2, 4, 4, (5, 8))
    return path


def test_dense_gemms_keep_their_place_in_execution_order(tmp_path: Path) -> None:
    from accel_sim.lowering import lower_model
    from accel_sim.sources import load_workload

    path = _save_attention(tmp_path)
    header = fmt.read_header(path)
    assert [(e["name"], e["index"]) for e in header["dense_gemms"]] == [("attn_qk", 1),
                                                                        ("attn_av", 2)]
    stored = compressed.read_layers(path)
    assert [(la.name, la.scheme) for la in stored] == [
        ("qkv", "dense"), ("attn_qk", "dense"), ("attn_av", "dense"), ("proj", "nm")]
    layers, sparsity = load_workload(str(path), batch=3)
    traced = lower_model(_Attention(), (5, 8), batch=3)
    assert [la.shape_key for la in layers] == [la.shape_key for la in traced]
    assert layers[1].kind == "matmul" and layers[1].groups == 3 * 2 and layers[1].weight is None
    assert sparsity["attn_qk"].scheme == "dense" and sparsity["proj"].scheme == "nm"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda h: h["dense_gemms"][1].update(index=1), "dense GEMM attn_av: index = 1: allowed "
                                                     "an integer in 2..3"),
    (lambda h: h["dense_gemms"][0].update(name="qkv"), "dense GEMM qkv appears twice"),
    (lambda h: h["dense_gemms"][0]["geometry"].update(kind="pool"), "geometry.kind = 'pool'"),
    (lambda h: h["dense_gemms"][0]["geometry"].update(P=0), "geometry.P = 0: allowed an integer"),
    (lambda h: h["dense_gemms"][0].pop("index"), "dense_gemms\\[0\\] lacks the field 'index'"),
    (lambda h: h.pop("dense_gemms"), "header lacks the field 'dense_gemms'"),
])
def test_bad_dense_gemms_are_one_line_errors(tmp_path: Path, edit, message: str) -> None:
    path = _save_attention(tmp_path)
    _rewrite(path, edit)
    with pytest.raises(UserError, match=message) as err:
        compressed.read_layers(path)
    assert "\n" not in str(err.value)
