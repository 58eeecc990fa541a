"""Data sets and loaders: the built-in glyph sets, IDX files, CIFAR-100 pickles, image folders.

Everything here works offline; nothing is ever downloaded.

* `glyph_set` builds (or reads from the disk cache) a deterministic 100-class image data
  set of 32x32 RGB character images rendered from the fonts that ship inside matplotlib:
  ``glyph100`` (quick; `glyph100`) or ``glyph100-hard`` (elastic warps, blur, clutter,
  occluders, textured backgrounds).
* `load_idx` reads a folder of IDX files (MNIST layout: MNIST, Fashion-MNIST, KMNIST);
  `fashion_mnist` reads Debian's ``dataset-fashion-mnist`` package.
* `load_cifar100` reads a ``cifar-100-python`` directory (``train``, ``test``, ``meta``).
* `load_image_folder` indexes an ImageNet-style tree (``root/train/<class>/*``,
  ``root/val/<class>/*``) and decodes images lazily in ``__getitem__``.
* `load_dataset` dispatches on a name or a path.
* `user_subset` picks the classes and images of one simulated user.

Bad input raises `crisp.errors.UserError` with a one-line message.

Modules: `crisp.data.datasets` (the containers `ImageDataset`,
`ImageFolderDataset`), `crisp.data.glyphs` (glyph100: classes, rendering, cache),
`crisp.data.files` (CIFAR-100 and folder loaders), `crisp.data.idx` (IDX files);
everything public is re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crisp.data.datasets import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Dataset,
    ImageDataset,
    ImageFolderDataset,
    _check_count,
    _check_seed,
    _check_split,
)
from crisp.data.files import _cifar_dir, load_cifar100, load_image_folder
from crisp.data.glyphs import (
    DEFAULT_TEST_PER_CLASS,
    DEFAULT_TRAIN_PER_CLASS,
    FORMAT_VERSION,
    GLYPH100_CLASS_NAMES,
    GLYPH100_CLASSES,
    GLYPH100_FONTS,
    GLYPH100_MEAN,
    GLYPH100_SCRIPTS,
    GLYPH100_STD,
    GLYPH_STYLES,
    GlyphStyle,
    default_cache_dir,
    glyph100,
    glyph100_cache_path,
    glyph_cache_path,
    glyph_set,
    render_glyph100,
    render_glyph_set,
)
from crisp.data.idx import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    fashion_mnist,
    is_idx_folder,
    load_idx,
    read_idx,
)
from crisp.errors import UserError

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DEFAULT_TEST_PER_CLASS",
    "DEFAULT_TRAIN_PER_CLASS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FORMAT_VERSION",
    "GLYPH100_CLASSES",
    "GLYPH100_CLASS_NAMES",
    "GLYPH100_FONTS",
    "GLYPH100_MEAN",
    "GLYPH100_SCRIPTS",
    "GLYPH100_STD",
    "GLYPH_STYLES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KNOWN_DATASETS",
    "Dataset",
    "GlyphStyle",
    "ImageDataset",
    "ImageFolderDataset",
    "default_cache_dir",
    "default_image_size",
    "fashion_mnist",
    "glyph100",
    "glyph100_cache_path",
    "glyph_cache_path",
    "glyph_set",
    "load_cifar100",
    "load_dataset",
    "load_idx",
    "load_image_folder",
    "read_idx",
    "render_glyph100",
    "render_glyph_set",
    "user_subset",
]

#: Data set names `load_dataset` knows (anything else must be ``idx:FOLDER`` or a path).
KNOWN_DATASETS: tuple[str, ...] = (*GLYPH_STYLES, "fashion-mnist")

_ALLOWED = (f"allowed {', '.join(KNOWN_DATASETS)}, idx:FOLDER or a path to a CIFAR-100, IDX or "
            "ImageNet-style folder")


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


def load_dataset(name_or_path: str | os.PathLike, split: str = "train", seed: int = 0,
                 root: str | os.PathLike | None = None, *, n_per_class: int | None = None,
                 image_size: int | None = None) -> Dataset:
    """Load a data set by name or path.

    Args:
        name_or_path: ``"glyph100"``, ``"glyph100-hard"``, ``"fashion-mnist"`` (Debian's
            ``dataset-fashion-mnist`` files), ``"idx:FOLDER"`` (any folder of IDX files:
            MNIST, KMNIST, ...), a CIFAR-100 directory (``cifar-100-python`` or its parent),
            a folder of IDX files, or an ImageNet-style folder (``train/<class>/``,
            ``val/<class>/``).
        split: ``"train"`` or ``"test"`` (``"val"`` means test).
        seed: the glyph sets' seed (integer >= 0); ignored by the on-disk formats.
        root: for the glyph sets, the cache directory (default `default_cache_dir`); for
            a relative path, the directory it is relative to.
        n_per_class: glyph set images per class (default 300 train / 100 test).
        image_size: output side in pixels. ImageNet-style folders: default 224 (shorter side
            resized, centre cropped). In-memory sets (glyph, CIFAR-100, IDX): default their own
            size (32, 32, 28); another value resizes every image (bilinear).

    Returns:
        `ImageDataset` (glyph sets, CIFAR-100, IDX) or `ImageFolderDataset`.
    """
    split = _check_split(split)
    seed = _check_seed(seed)
    if image_size is not None:
        image_size = _check_count("image_size", image_size)
    ds = _load(os.fspath(name_or_path), split, seed, root, n_per_class, image_size)
    if image_size is not None and isinstance(ds, ImageDataset):
        ds = ds.resized(image_size)
    return ds


def default_image_size(name_or_path: str | os.PathLike, model_side: int) -> int | None:
    """The image side the CLIs read a data set at when ``--image-size`` is not given.

    ImageNet-style and IDX folders (and ``fashion-mnist``) are read at the model's own input
    side ``model_side`` (32 for the CIFAR-style networks, 224 for torchvision's); the glyph
    sets and CIFAR-100 keep their 32x32 pixels (None), since upscaling a whole in-memory set
    to 224 pixels costs gigabytes: give ``--image-size`` for that.
    """
    text = os.fspath(name_or_path)
    if text.lower() in GLYPH_STYLES:
        return None
    p = Path(text).expanduser()
    if not text.lower().startswith("idx:") and p.is_dir() and _cifar_dir(p) is not None:
        return None
    return model_side


def _load(text: str, split: str, seed: int, root: str | os.PathLike | None,
          n_per_class: int | None, image_size: int | None) -> Dataset:
    if text.lower() in GLYPH_STYLES:  # a name wins over a folder of that name (use ./name)
        return glyph_set(text.lower(), split, seed, n_per_class, root)
    if text.lower() == "fashion-mnist":
        return fashion_mnist(split)
    is_idx = text.lower().startswith("idx:")
    if is_idx:
        text = text[4:]
        if not text:
            raise UserError("--data idx: needs a folder, e.g. idx:/data/mnist")
    p = Path(text).expanduser()
    if root is not None and not p.is_absolute():
        p = Path(root).expanduser() / p
    if is_idx:
        return load_idx(p, split)
    if not p.exists():
        if os.sep not in text and "/" not in text and "." not in text:
            raise UserError(f"unknown data set {text!r}: {_ALLOWED}")
        raise UserError(f"data set path {p} does not exist: {_ALLOWED}")
    if not p.is_dir():
        raise UserError(f"data set path {p} is not a folder: allowed a CIFAR-100, IDX or "
                        "ImageNet-style folder")
    if not any(p.iterdir()):
        raise UserError(f"data set path {p} is empty: allowed a CIFAR-100, IDX or "
                        "ImageNet-style folder")
    if _cifar_dir(p) is not None:
        return load_cifar100(p, split)
    if is_idx_folder(p):
        return load_idx(p, split)
    if (p / "train").is_dir() or (p / "val").is_dir() or (p / "test").is_dir():
        return load_image_folder(p, split, image_size or 224)
    raise UserError(f"data set path {p} has neither CIFAR-100 files, IDX files nor train/ val/ "
                    "folders: allowed a cifar-100-python directory, an IDX folder or an "
                    "ImageNet-style folder")


# ----------------------------------------------------------------------------------------------
# User subsets
# ----------------------------------------------------------------------------------------------


def user_subset(dataset: Dataset, classes: int | Sequence[int], n_per_class: int | None = 256,
                seed: int = 0, *, remap: bool = False) -> tuple[Dataset, list[int]]:
    """The data of one user: ``k`` classes and up to ``n_per_class`` images of each.

    Args:
        dataset: any data set from this module (usually a train split).
        classes: an int ``k`` (pick k distinct classes at random from ``seed``; returned
            sorted) or an explicit sequence of distinct class ids (kept in the given order).
        n_per_class: images sampled per class without replacement (all when a class has
            fewer, or when None). The paper uses 256.
        seed: integer >= 0 for the class pick and the image sampling.
        remap: if True, labels become 0..k-1 in the order of the returned ids and
            ``classes`` shrinks to those k names (for a shrunk head); if False the labels and
            class list are the dataset's own.

    Returns:
        (subset, class_ids): the subset keeps the dataset's row order; ``class_ids[j]`` is
        the original id of new label j when ``remap`` is True.
    """
    seed = _check_seed(seed)
    num = dataset.num_classes
    rng = np.random.default_rng(seed)
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        k = int(classes)
        if not 1 <= k <= num:
            raise UserError(f"k={k} classes not allowed: allowed 1..{num} (the data set has "
                            f"{num} classes)")
        ids = sorted(int(v) for v in rng.choice(num, size=k, replace=False))
    else:
        try:
            ids = list(classes)
        except TypeError:
            raise UserError(f"classes {classes!r} not allowed: allowed an int k or a list of "
                            f"class ids in 0..{num - 1}") from None
        if not ids:
            raise UserError(f"empty class list: allowed one or more class ids in 0..{num - 1}")
        for v in ids:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise UserError(f"class id {v!r} not allowed: allowed integers 0..{num - 1}")
            if not 0 <= v < num:
                raise UserError(f"class id {v} out of range: allowed 0..{num - 1}")
        ids = [int(v) for v in ids]
        seen: set[int] = set()
        for v in ids:
            if v in seen:
                raise UserError(f"duplicate class id {v} in {ids}: allowed each id once")
            seen.add(v)
    if n_per_class is not None:
        n_per_class = _check_count("n_per_class", n_per_class)
    labels = dataset.labels.numpy()
    picked: list[np.ndarray] = []
    for c in ids:
        rows = np.flatnonzero(labels == c)
        if n_per_class is not None and rows.size > n_per_class:
            rows = np.sort(rng.choice(rows, size=n_per_class, replace=False))
        picked.append(rows)
    idx = np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
    if remap:
        mapping = {c: j for j, c in enumerate(ids)}
        sub = dataset.subset(idx, mapping, [dataset.classes[c] for c in ids])
    else:
        sub = dataset.subset(idx)
    return sub, ids
