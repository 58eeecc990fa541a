"""Data sets and loaders: the built-in ``glyph100`` set, CIFAR-100 pickles, ImageNet-style folders.

Everything here works offline; nothing is ever downloaded.

* :func:`glyph100` builds (or reads from the disk cache) a deterministic 100-class image data set
  of 32x32 RGB character images rendered from the fonts that ship inside matplotlib.
* :func:`load_cifar100` reads a ``cifar-100-python`` directory (``train``, ``test``, ``meta``).
* :func:`load_image_folder` indexes an ImageNet-style tree (``root/train/<class>/*``,
  ``root/val/<class>/*``) and decodes images lazily in ``__getitem__``.
* :func:`load_dataset` dispatches on a name or a path.
* :func:`user_subset` picks the classes and images of one simulated user.

Bad input raises :class:`crisp.errors.UserError` with a one-line message.

Modules: :mod:`crisp.data.datasets` (the containers :class:`ImageDataset`,
:class:`ImageFolderDataset`), :mod:`crisp.data.glyphs` (glyph100: classes, rendering, cache),
:mod:`crisp.data.files` (CIFAR-100 and folder loaders); everything public is re-exported here.
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
    default_cache_dir,
    glyph100,
    glyph100_cache_path,
    render_glyph100,
)
from crisp.errors import UserError

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DEFAULT_TEST_PER_CLASS",
    "DEFAULT_TRAIN_PER_CLASS",
    "FORMAT_VERSION",
    "GLYPH100_CLASSES",
    "GLYPH100_CLASS_NAMES",
    "GLYPH100_FONTS",
    "GLYPH100_MEAN",
    "GLYPH100_SCRIPTS",
    "GLYPH100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KNOWN_DATASETS",
    "Dataset",
    "ImageDataset",
    "ImageFolderDataset",
    "default_cache_dir",
    "glyph100",
    "glyph100_cache_path",
    "load_cifar100",
    "load_dataset",
    "load_image_folder",
    "render_glyph100",
    "user_subset",
]

#: Data set names :func:`load_dataset` knows (anything else must be a path).
KNOWN_DATASETS: tuple[str, ...] = ("glyph100",)


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


def load_dataset(name_or_path: str | os.PathLike, split: str = "train", seed: int = 0,
                 root: str | os.PathLike | None = None, *, n_per_class: int | None = None,
                 image_size: int = 224) -> Dataset:
    """Load a data set by name or path.

    Args:
        name_or_path: ``"glyph100"``, a CIFAR-100 directory (``cifar-100-python`` or its
            parent), or an ImageNet-style folder (``train/<class>/``, ``val/<class>/``).
        split: ``"train"`` or ``"test"`` (``"val"`` means test).
        seed: glyph100's seed (integer >= 0); ignored by the on-disk formats.
        root: for glyph100, the cache directory (default :func:`default_cache_dir`); for a
            relative path, the directory it is relative to.
        n_per_class: glyph100 images per class (default 300 train / 100 test).
        image_size: ImageNet-style folders: output side in pixels.

    Returns:
        :class:`ImageDataset` (glyph100, CIFAR-100) or :class:`ImageFolderDataset`.
    """
    split = _check_split(split)
    seed = _check_seed(seed)
    text = os.fspath(name_or_path)
    if text.lower() in KNOWN_DATASETS:  # a name wins over a folder of that name (use ./name)
        return glyph100(split, seed, n_per_class, root)
    p = Path(text).expanduser()
    if root is not None and not p.is_absolute():
        p = Path(root).expanduser() / p
    if not p.exists():
        if os.sep not in text and "/" not in text and "." not in text:
            raise UserError(f"unknown data set {text!r}: allowed {', '.join(KNOWN_DATASETS)} or "
                            "a path to a CIFAR-100 or ImageNet-style folder")
        raise UserError(f"data set path {p} does not exist: allowed "
                        f"{', '.join(KNOWN_DATASETS)} or an existing CIFAR-100 or "
                        "ImageNet-style folder")
    if not p.is_dir():
        raise UserError(f"data set path {p} is not a folder: allowed a CIFAR-100 or "
                        "ImageNet-style folder")
    if not any(p.iterdir()):
        raise UserError(f"data set path {p} is empty: allowed a CIFAR-100 or ImageNet-style "
                        "folder")
    if _cifar_dir(p) is not None:
        return load_cifar100(p, split)
    if (p / "train").is_dir() or (p / "val").is_dir() or (p / "test").is_dir():
        return load_image_folder(p, split, image_size)
    raise UserError(f"data set path {p} has neither CIFAR-100 files nor train/ val/ folders: "
                    "allowed a cifar-100-python directory or an ImageNet-style folder")


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
