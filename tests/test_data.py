"""Tests for crisp.data: the glyph sets, the IDX, CIFAR-100 and ImageFolder loaders, user subsets,
image sizes, errors."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from crisp import data
from crisp.data import (
    GLYPH100_CLASS_NAMES,
    GLYPH100_CLASSES,
    ImageDataset,
    ImageFolderDataset,
    glyph100,
    glyph100_cache_path,
    glyph_cache_path,
    glyph_set,
    glyphs,
    load_dataset,
    read_idx,
    render_glyph100,
    render_glyph_set,
    user_subset,
)
from crisp.errors import UserError

N = 5  # images per class in these tests (the default is 300 / 100)


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CRISP_DATA_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def small_train() -> tuple[np.ndarray, np.ndarray]:
    return render_glyph100(N, seed=0, split="train")


def _sha(a: np.ndarray | torch.Tensor) -> str:
    arr = a.numpy() if isinstance(a, torch.Tensor) else a
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# glyph100 classes
# ---------------------------------------------------------------------------------------------

# Independent list of look-alike groups: at most one member of each may be a class.
CONFUSABLE_GROUPS = [
    "0OoΟοОоՕΘθѲØ", "1Il|ıιІӀ", "AΑА", "BΒВ", "CcСсϹς", "EΕЕ", "HΗН", "KΚКκк", "MΜМм",
    "NΝ", "PpΡρРр", "TΤТτт", "XxΧχХх", "YΥҮ", "yуγ", "SsЅѕՏ", "JЈ", "ZzΖ", "aаα", "eе",
    "iі", "jј", "hһ", "nηпՈŋ", "UuυսՍ", "vνVѵ", "wѡ", "3ЗзƷՅ", "6б", "ΓГ", "ΠПπ", "ΦФφ",
    "ΛЛ", "ΨѰψ", "ШЩш", "bЬьѢ", "ЋЂћ", "LԼŁ", "δð", "βß", "DÐ", "ЖжӁ", "ИиЙ", "Ээ",
]


def test_classes_are_100_distinct_with_names() -> None:
    assert len(GLYPH100_CLASSES) == 100
    assert len(set(GLYPH100_CLASSES)) == 100
    assert all(len(c) == 1 for c in GLYPH100_CLASSES)
    assert GLYPH100_CLASS_NAMES[0] == "DIGIT ZERO"
    assert tuple(unicodedata.name(c) for c in GLYPH100_CLASSES) == GLYPH100_CLASS_NAMES
    assert "".join(data.GLYPH100_SCRIPTS.values()) == "".join(GLYPH100_CLASSES)


def test_no_look_alike_classes() -> None:
    classes = set(GLYPH100_CLASSES)
    for group in CONFUSABLE_GROUPS:
        present = [c for c in group if c in classes]
        assert len(present) <= 1, f"look-alikes {present} are separate classes"
    # no letter with a combining mark (decomposes to base + accent)
    for c in GLYPH100_CLASSES:
        assert len(unicodedata.normalize("NFD", c)) == 1, c


def test_several_scripts() -> None:
    scripts = {n.split()[0] for n in GLYPH100_CLASS_NAMES}
    assert {"DIGIT", "LATIN", "GREEK", "CYRILLIC"} <= scripts


# ---------------------------------------------------------------------------------------------
# glyph100 rendering and caching
# ---------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_balance(small_train: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small_train
    assert images.shape == (100 * N, 3, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (100 * N,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=100).tolist() == [N] * 100
    # every image has a glyph: a real spread of values, not a flat colour
    spread = images.reshape(len(images), -1).astype(int)
    assert (spread.max(1) - spread.min(1) > 60).all()


def test_same_seed_same_bytes_different_seed_differs(
        small_train: tuple[np.ndarray, np.ndarray]) -> None:
    again, labels = render_glyph100(N, seed=0, split="train")
    assert _sha(again) == _sha(small_train[0])
    assert np.array_equal(labels, small_train[1])
    other, _ = render_glyph100(N, seed=1, split="train")
    assert _sha(other) != _sha(small_train[0])
    test_split, _ = render_glyph100(N, seed=0, split="test")
    assert _sha(test_split) != _sha(small_train[0])


def test_dataset_item_and_dataloader(_tmp_cache: Path) -> None:
    ds = glyph100("train", seed=0, n_per_class=N)
    assert isinstance(ds, ImageDataset)
    assert len(ds) == 100 * N and ds.num_classes == 100 and ds.classes == list(GLYPH100_CLASSES)
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and y == 3
    expected = (ds.images[3].float() / 255 - 0.5) / data.GLYPH100_STD[0]
    assert torch.allclose(x, expected)
    assert torch.allclose(ds.normalised()[3], x)
    xb, yb = next(iter(DataLoader(ds, batch_size=16)))
    assert xb.shape == (16, 3, 32, 32) and yb.dtype == torch.int64


def test_cache_written_then_read_without_rendering(
        _tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = glyph100_cache_path("test", 0, N)
    assert path.parent == _tmp_cache and not path.exists()
    first = glyph100("test", seed=0, n_per_class=N)
    assert path.is_file()
    assert [p.name for p in _tmp_cache.iterdir()] == [path.name]  # no temp files left

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("rendered again instead of reading the cache")

    monkeypatch.setattr(glyphs, "render_glyph_set", boom)
    second = glyph100("test", seed=0, n_per_class=N)
    assert _sha(second.images) == _sha(first.images)
    assert torch.equal(second.labels, first.labels)


def test_corrupt_cache_is_rebuilt(_tmp_cache: Path) -> None:
    path = glyph100_cache_path("test", 3, N)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    ds = glyph100("test", seed=3, n_per_class=N)
    assert len(ds) == 100 * N
    assert glyph100("test", seed=3, n_per_class=N).images.equal(ds.images)


def test_cache_dir_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = glyph100_cache_path("train", 7, N, cache_dir=tmp_path / "x")
    assert p.parent == tmp_path / "x" and "seed7" in p.name and f"train{N}" in p.name
    assert f"v{data.FORMAT_VERSION}" in p.name
    assert glyph100_cache_path("train", 7, N) != glyph100_cache_path("train", 8, N)
    assert glyph100_cache_path("train", 7, N) != glyph100_cache_path("train", 7, N + 1)
    monkeypatch.delenv("CRISP_DATA_DIR")
    assert data.default_cache_dir() == Path.home() / ".cache" / "crisp-sim"


def test_load_dataset_glyph100_root_is_cache(tmp_path: Path) -> None:
    ds = load_dataset("glyph100", "test", seed=2, root=tmp_path / "c", n_per_class=2)
    assert len(ds) == 200
    assert glyph100_cache_path("test", 2, 2, tmp_path / "c").is_file()


# ---------------------------------------------------------------------------------------------
# glyph100-hard
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hard_train() -> tuple[np.ndarray, np.ndarray]:
    return render_glyph_set("glyph100-hard", N, seed=0, split="train")


def test_hard_set_same_seed_same_bytes_different_seed_differs(
        hard_train: tuple[np.ndarray, np.ndarray],
        small_train: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = hard_train
    assert images.shape == (100 * N, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(labels, small_train[1])
    again, _ = render_glyph_set("glyph100-hard", N, seed=0, split="train")
    assert _sha(again) == _sha(images)
    other, _ = render_glyph_set("glyph100-hard", N, seed=1, split="train")
    assert _sha(other) != _sha(images)
    test_split, _ = render_glyph_set("glyph100-hard", N, seed=0, split="test")
    assert _sha(test_split) != _sha(images)
    # not glyph100's images with something added: a different stream altogether
    assert (images != small_train[0]).mean() > 0.9


def test_glyph100_is_the_plain_style(small_train: tuple[np.ndarray, np.ndarray]) -> None:
    plain, _ = render_glyph_set("glyph100", N, seed=0, split="train")
    assert _sha(plain) == _sha(small_train[0])
    style = data.GLYPH_STYLES["glyph100"]
    assert (style.elastic, style.blur, style.strokes, style.occluder, style.texture) == (0,) * 5


def _edge_energy(images: np.ndarray) -> float:
    grey = images.astype(np.float32).mean(1)
    return float(np.abs(np.diff(grey, axis=2)).mean())


def test_hard_set_has_lower_contrast(
        hard_train: tuple[np.ndarray, np.ndarray],
        small_train: tuple[np.ndarray, np.ndarray]) -> None:
    hard, easy = hard_train[0].astype(np.float32), small_train[0].astype(np.float32)
    # lower contrast between the two colour modes of an image (ink vs background)

    def contrast(a: np.ndarray) -> float:
        grey = a.mean(1).reshape(len(a), -1)
        return float(np.median(np.percentile(grey, 95, 1) - np.percentile(grey, 5, 1)))
    assert contrast(hard) < contrast(easy)


def test_hard_set_distortions_each_change_the_image() -> None:
    import dataclasses

    base = data.GLYPH_STYLES["glyph100-hard"]
    plain = dataclasses.replace(base, elastic=0.0, blur=0.0, strokes=0, occluder=0.0, texture=0.0)
    styles = {"plain": plain, **{f: dataclasses.replace(plain, **{f: getattr(base, f)})
                                 for f in ("elastic", "blur", "strokes", "occluder", "texture")}}
    out = {}
    for name, style in styles.items():
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(glyphs.GLYPH_STYLES, "glyph100-hard", style)
            out[name] = render_glyph_set("glyph100-hard", 1, seed=4)[0]
    for name in styles:
        if name != "plain":
            assert _sha(out[name]) != _sha(out["plain"]), f"{name} changed nothing"


def test_hard_set_cache_and_dispatch(_tmp_cache: Path) -> None:
    path = glyph_cache_path("glyph100-hard", "test", 0, 2)
    assert path.name.startswith("glyph100-hard-") and path != glyph100_cache_path("test", 0, 2)
    ds = load_dataset("glyph100-hard", "test", n_per_class=2)
    assert path.is_file() and ds.classes == list(GLYPH100_CLASSES)
    assert ds.name.startswith("glyph100-hard/test")
    assert ds.std == data.GLYPH_STYLES["glyph100-hard"].std
    assert torch.equal(glyph_set("glyph100-hard", "test", n_per_class=2).images, ds.images)
    with pytest.raises(UserError, match=r"unknown glyph set 'glyph7': allowed glyph100"):
        glyph_set("glyph7")


# ---------------------------------------------------------------------------------------------
# IDX files (MNIST layout)
# ---------------------------------------------------------------------------------------------


def _idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    dims = np.asarray(a.shape, ">u4").tobytes()
    return bytes([0, 0, code, a.ndim]) + dims + a.astype(a.dtype.newbyteorder(">")).tobytes()


def _write_idx(d: Path, n_train: int = 7, n_test: int = 3, gz: bool = True,
               side: int = 28) -> dict[str, np.ndarray]:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = (np.arange(n) % 4).astype(np.uint8)
        for kind, arr, dims in (("images", images, 3), ("labels", labels, 1)):
            raw = _idx_bytes(arr)
            name = f"{prefix}-{kind}-idx{dims}-ubyte"
            if gz:
                (d / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (d / name).write_bytes(raw)
        arrays[prefix] = images
        arrays[f"{prefix}_labels"] = labels
    return arrays


def test_read_idx_types_and_errors(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 5
    (tmp_path / "a.idx").write_bytes(_idx_bytes(a, 0x0B))
    back = read_idx(tmp_path / "a.idx")
    assert back.dtype == np.int16 and np.array_equal(back, a)
    f = np.linspace(-1, 1, 6, dtype=np.float32)
    (tmp_path / "f.idx.gz").write_bytes(gzip.compress(_idx_bytes(f, 0x0D)))
    assert np.array_equal(read_idx(tmp_path / "f.idx.gz"), f)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01rest")
    with pytest.raises(UserError, match="is not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(np.zeros((3, 2), np.uint8))[:-1])
    with pytest.raises(UserError, match=r"holds 5 data bytes: its header \(3, 2\) of uint8 "
                                        r"needs 6"):
        read_idx(tmp_path / "short")
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="cannot read IDX file"):
        read_idx(tmp_path / "x.gz")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loader(tmp_path: Path, gz: bool) -> None:
    arrays = _write_idx(tmp_path / "mnist", gz=gz)
    for spec in (f"idx:{tmp_path / 'mnist'}", tmp_path / "mnist"):  # prefix or auto-detected
        train = load_dataset(spec, "train")
        assert isinstance(train, ImageDataset) and len(train) == 7
        assert train.images.shape == (7, 3, 28, 28) and train.classes == ["0", "1", "2", "3"]
        assert np.array_equal(train.images[:, 1].numpy(), arrays["train"])
        assert train.labels.tolist() == arrays["train_labels"].tolist()
        test = load_dataset(spec, "test")
        assert len(test) == 3 and np.array_equal(test.images[:, 0].numpy(), arrays["t10k"])
        assert test.classes == train.classes
    x, y = train[2]
    assert x.shape == (3, 28, 28) and y == 2 and torch.equal(x[0], x[2])


def test_idx_resized_to_model_input(tmp_path: Path) -> None:
    _write_idx(tmp_path, side=28)
    ds = load_dataset(f"idx:{tmp_path}", "train", image_size=32)
    assert ds.images.shape == (7, 3, 32, 32) and ds.images.stride(1) == 0  # grey stays a view
    flat = ImageDataset(torch.full((2, 3, 28, 28), 77, dtype=torch.uint8),
                        torch.zeros(2, dtype=torch.int64), ["a"])
    assert bool((flat.resized(32).images == 77).all())  # a flat image stays flat
    assert flat.resized(28) is flat
    x, _ = ds[0]
    assert x.shape == (3, 32, 32)


def test_idx_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match=r"IDX folder .* does not exist"):
        load_dataset(f"idx:{tmp_path / 'none'}")
    with pytest.raises(UserError, match="needs a folder"):
        load_dataset("idx:")
    _write_idx(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="has no test IDX files"):
        load_dataset(f"idx:{tmp_path / 'd'}", "test")
    e = tmp_path / "e"
    e.mkdir()
    (e / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((2, 4, 4), np.uint8)))
    (e / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(UserError, match=r"have shape \(3,\): allowed \[2\]"):
        load_dataset(f"idx:{e}")
    monkeypatch.setattr(data.idx, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_idx(tmp_path / "fm")
    monkeypatch.setattr(data.idx, "FASHION_MNIST_DIR", tmp_path / "fm")
    ds = load_dataset("fashion-mnist", "test")
    assert ds.classes == list(data.FASHION_MNIST_CLASSES) and len(ds) == 3
    assert ds.name == "fashion-mnist/test"


# ---------------------------------------------------------------------------------------------
# image sizes
# ---------------------------------------------------------------------------------------------


def test_default_image_size_follows_the_model(tmp_path: Path) -> None:
    _write_folder(tmp_path / "pngs")
    _write_idx(tmp_path / "idx")
    assert data.default_image_size(tmp_path / "pngs", 32) == 32
    assert data.default_image_size(tmp_path / "pngs", 224) == 224
    assert data.default_image_size(f"idx:{tmp_path / 'idx'}", 32) == 32
    assert data.default_image_size("glyph100", 224) is None  # in-memory 32 px sets stay
    _write_cifar(tmp_path / "cifar-100-python")
    assert data.default_image_size(tmp_path, 224) is None
    assert load_dataset(tmp_path / "pngs", "train").image_size == 224  # library default


def test_glyph_set_resized_on_request(_tmp_cache: Path) -> None:
    ds = load_dataset("glyph100", "test", n_per_class=1, image_size=16)
    assert ds.images.shape == (100, 3, 16, 16)
    assert load_dataset("glyph100", "test", n_per_class=1, image_size=32).images.shape[-1] == 32
    with pytest.raises(UserError, match="image_size 0 not allowed"):
        load_dataset("glyph100", "test", n_per_class=1, image_size=0)


# ---------------------------------------------------------------------------------------------
# CIFAR-100 pickles
# ---------------------------------------------------------------------------------------------


def _write_cifar(d: Path, n_train: int = 6, n_test: int = 4) -> None:
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                 b"coarse_labels": [0] * n, b"filenames": [b"x.png"] * n}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    with open(d / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                     b"coarse_label_names": [b"all"]}, f)


def test_cifar100_loader(tmp_path: Path) -> None:
    d = tmp_path / "cifar-100-python"
    _write_cifar(d)
    with open(d / "train", "rb") as f:
        raw = pickle.load(f)
    for where in (d, tmp_path):  # the directory itself or its parent
        ds = load_dataset(where, "train")
        assert isinstance(ds, ImageDataset)
        assert ds.images.shape == (6, 3, 32, 32) and ds.images.dtype == torch.uint8
        assert ds.labels.tolist() == raw[b"fine_labels"]
        assert ds.classes[:2] == ["c0", "c1"] and ds.num_classes == 100
        assert np.array_equal(ds.images[1].numpy().reshape(-1), raw[b"data"][1])
    test = load_dataset(d, "test")
    assert len(test) == 4
    x, _ = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def test_cifar100_refuses_code_in_pickles(tmp_path: Path) -> None:
    d = tmp_path / "cifar-100-python"
    _write_cifar(d)
    with open(d / "train", "wb") as f:
        pickle.dump({b"data": _Evil(), b"fine_labels": []}, f)
    with pytest.raises(UserError, match="refusing to unpickle"):
        load_dataset(d, "train")


def test_cifar100_bad_labels_and_missing_meta(tmp_path: Path) -> None:
    d = tmp_path / "cifar-100-python"
    _write_cifar(d)
    (d / "meta").unlink()
    ds = load_dataset(d, "test")
    assert ds.classes == [str(i) for i in range(100)]
    with open(d / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [3, 100]}, f)
    with pytest.raises(UserError, match=r"label 100: allowed 0\.\.99"):
        load_dataset(d, "test")


# ---------------------------------------------------------------------------------------------
# ImageNet-style folders
# ---------------------------------------------------------------------------------------------


def _write_folder(root: Path) -> None:
    from PIL import Image

    colours = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}
    for split, per in (("train", 2), ("val", 1)):
        for name, rgb in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(per):
                Image.new("RGB", (20 + 3 * i, 12), rgb).save(root / split / name / f"{i}.PNG")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")


def test_image_folder_loader(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    train = load_dataset(tmp_path, "train", image_size=16)
    assert isinstance(train, ImageFolderDataset)
    assert train.classes == ["cat", "dog", "emu"]
    assert len(train) == 6 and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    raw = train.load_uint8(2)
    assert raw.shape == (3, 16, 16) and raw.dtype == torch.uint8
    assert raw[:, 8, 8].tolist() == [0, 255, 0]
    x, y = train[4]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 2
    val = load_dataset(tmp_path, "test", image_size=16)
    assert len(val) == 3 and val.labels.tolist() == [0, 1, 2]
    xb, yb = next(iter(DataLoader(val, batch_size=3)))
    assert xb.shape == (3, 3, 16, 16) and yb.tolist() == [0, 1, 2]


def test_image_folder_is_lazy(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    train = load_dataset(tmp_path, "train", image_size=8)  # indexing decodes nothing
    assert len(train) == 7
    broken = [i for i, p in enumerate(train.paths) if p.name == "broken.jpg"]
    assert train[0][0].shape == (3, 8, 8)
    with pytest.raises(UserError, match=r"broken\.jpg is not a readable image \(cannot identify"):
        train[broken[0]]  # one line at the command line, not a traceback


# ---------------------------------------------------------------------------------------------
# user subsets
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def small_ds(small_train: tuple[np.ndarray, np.ndarray]) -> ImageDataset:
    images, labels = small_train
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), list(GLYPH100_CLASSES))


def test_user_subset_by_ids(small_ds: ImageDataset) -> None:
    sub, ids = user_subset(small_ds, [42, 7, 99], n_per_class=3, seed=0)
    assert ids == [42, 7, 99]
    assert len(sub) == 9 and sorted(set(sub.labels.tolist())) == [7, 42, 99]
    assert np.bincount(sub.labels.numpy(), minlength=100)[[7, 42, 99]].tolist() == [3, 3, 3]
    assert sub.classes == small_ds.classes
    remapped, _ = user_subset(small_ds, [42, 7, 99], n_per_class=3, seed=0, remap=True)
    assert remapped.classes == [GLYPH100_CLASSES[i] for i in (42, 7, 99)]
    assert torch.equal(remapped.images, sub.images)
    back = torch.tensor([ids[v] for v in remapped.labels.tolist()])
    assert torch.equal(back, sub.labels)
    everything, _ = user_subset(small_ds, [5], n_per_class=None)
    assert len(everything) == N


def test_user_subset_by_count_is_seeded(small_ds: ImageDataset) -> None:
    sub, ids = user_subset(small_ds, 10, n_per_class=2, seed=1)
    assert len(ids) == 10 and ids == sorted(ids) and len(set(ids)) == 10
    assert len(sub) == 20 and set(sub.labels.tolist()) == set(ids)
    again, ids2 = user_subset(small_ds, 10, n_per_class=2, seed=1)
    assert ids2 == ids and torch.equal(again.images, sub.images)
    _, ids3 = user_subset(small_ds, 10, n_per_class=2, seed=2)
    assert ids3 != ids
    full, all_ids = user_subset(small_ds, 100, n_per_class=256)
    assert all_ids == list(range(100)) and len(full) == len(small_ds)


def test_user_subset_on_image_folder(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    train = load_dataset(tmp_path, "train", image_size=8)
    sub, ids = user_subset(train, [2, 0], n_per_class=1, seed=0, remap=True)
    assert isinstance(sub, ImageFolderDataset) and ids == [2, 0]
    assert sub.classes == ["emu", "cat"] and sorted(sub.labels.tolist()) == [0, 1]
    assert sub[0][0].shape == (3, 8, 8)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_bad_class_ids(small_ds: ImageDataset) -> None:
    with pytest.raises(UserError, match=r"^class id 120 out of range: allowed 0\.\.99$"):
        user_subset(small_ds, [3, 120])
    with pytest.raises(UserError, match=r"class id -1 out of range: allowed 0\.\.99"):
        user_subset(small_ds, [-1])
    with pytest.raises(UserError, match="empty class list"):
        user_subset(small_ds, [])
    with pytest.raises(UserError, match=r"k=101 .*allowed 1\.\.100"):
        user_subset(small_ds, 101)
    with pytest.raises(UserError, match=r"k=0 .*allowed 1\.\.100"):
        user_subset(small_ds, 0)
    with pytest.raises(UserError, match="duplicate class id 5"):
        user_subset(small_ds, [5, 6, 5])
    with pytest.raises(UserError, match="n_per_class 0"):
        user_subset(small_ds, [5], n_per_class=0)


def test_bad_paths_and_names(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist") as e:
        load_dataset(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is empty"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(UserError, match=r"unknown data set 'imagenet9': allowed glyph100, "
                                        r"glyph100-hard, fashion-mnist, idx:FOLDER"):
        load_dataset("imagenet9")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "file.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="neither CIFAR-100 files, IDX files"):
        load_dataset(tmp_path / "odd")
    (tmp_path / "noimg" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no images"):
        load_dataset(tmp_path / "noimg")


def test_bad_split_seed_and_size() -> None:
    with pytest.raises(UserError, match="split 'dev' not allowed"):
        load_dataset("glyph100", "dev")
    with pytest.raises(UserError, match="seed -1 not allowed"):
        load_dataset("glyph100", seed=-1)
    with pytest.raises(UserError, match="n_per_class 0 not allowed") as e:
        glyph100(n_per_class=0)
    assert "\n" not in str(e.value)
