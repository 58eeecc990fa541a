"""Loaders for data on disk: CIFAR-100 (python pickle layout) and ImageNet-style folders."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from crisp.data.datasets import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDataset,
    ImageFolderDataset,
    _check_count,
    _check_split,
)
from crisp.errors import UserError

_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain containers and numpy arrays (no arbitrary code)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_ALLOWED:
            raise UserError(f"refusing to unpickle {module}.{name}: allowed plain data and "
                            "numpy arrays only")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"cannot read CIFAR-100 file {path}: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise UserError(f"CIFAR-100 file {path} holds a {type(obj).__name__}: allowed a dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_dir(path: Path) -> Path | None:
    for d in (path, path / "cifar-100-python"):
        if (d / "train").is_file() and (d / "test").is_file():
            return d
    return None


def load_cifar100(path: str | os.PathLike, split: str = "train") -> ImageDataset:
    """Read CIFAR-100 in its python-pickle layout (fine labels).

    Args:
        path: the ``cifar-100-python`` directory (holding ``train``, ``test`` and optionally
            ``meta``) or its parent.
        split: ``"train"`` or ``"test"`` (``"val"`` means test).

    Returns:
        `ImageDataset`, images uint8 [N, 3, 32, 32], labels int64 [N] (fine labels),
        classes from ``meta``'s ``fine_label_names`` (or ``"0".."99"`` without ``meta``).
    """
    split = _check_split(split)
    p = Path(path).expanduser()
    d = _cifar_dir(p)
    if d is None:
        raise UserError(f"{p} is not a CIFAR-100 directory: allowed a cifar-100-python "
                        "directory holding 'train' and 'test' (and 'meta') pickle files")
    batch = _unpickle(d / split)
    if "data" not in batch or "fine_labels" not in batch:
        raise UserError(f"CIFAR-100 file {d / split} lacks 'data' or 'fine_labels': allowed "
                        "the cifar-100-python pickle layout")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["fine_labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise UserError(f"CIFAR-100 file {d / split} has data of shape {data.shape} and "
                        f"{labels.shape[0]} labels: allowed [N, 3072] with N labels")
    names: list[str] = []
    if (d / "meta").is_file():
        meta = _unpickle(d / "meta")
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in meta.get("fine_label_names", [])]
    if not names:
        names = [str(i) for i in range(100)]
    bad = labels[(labels < 0) | (labels >= len(names))]
    if bad.size:
        raise UserError(f"CIFAR-100 file {d / split} has label {int(bad[0])}: allowed "
                        f"0..{len(names) - 1}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return ImageDataset(images, torch.from_numpy(labels), names, CIFAR100_MEAN, CIFAR100_STD,
                        f"cifar100/{split}")


# ----------------------------------------------------------------------------------------------
# ImageNet-style folders
# ----------------------------------------------------------------------------------------------


_IMAGE_EXTS = {".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff", ".gif"}


def _class_dirs(d: Path) -> list[str]:
    return sorted(c.name for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))


def load_image_folder(path: str | os.PathLike, split: str = "train",
                      image_size: int = 224) -> ImageFolderDataset:
    """Index an ImageNet-style folder: ``path/train/<class>/*`` and ``path/val/<class>/*``.

    The test split reads ``val/`` (or ``test/`` when there is no ``val/``). Class names are
    the sorted sub-folder names of ``train/`` (so ids agree between splits). Files with the
    usual image extensions (.jpeg .jpg .png .bmp .ppm .webp .tif .tiff .gif, any case) count.

    Args:
        path: the root folder.
        split: ``"train"`` or ``"test"`` (``"val"`` means test).
        image_size: output side in pixels (shorter side resized, centre cropped).

    Returns:
        `ImageFolderDataset`; no image is decoded until it is indexed.
    """
    split = _check_split(split)
    image_size = _check_count("image_size", image_size)
    root = Path(path).expanduser()
    if split == "train":
        d = root / "train"
    else:
        d = root / "val" if (root / "val").is_dir() else root / "test"
    if not d.is_dir():
        raise UserError(f"{root} has no {d.name}/ folder: allowed an ImageNet-style folder "
                        "with train/<class>/ and val/<class>/ sub-folders")
    classes = _class_dirs(root / "train") if (root / "train").is_dir() else _class_dirs(d)
    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for c in _class_dirs(d):
        if c not in index:
            raise UserError(f"class folder {d / c} is not in {root / 'train'}: allowed the "
                            "classes of the train split")
        for f in sorted((d / c).iterdir()):
            if f.is_file() and f.suffix.lower() in _IMAGE_EXTS:
                paths.append(f)
                labels.append(index[c])
    if not paths:
        raise UserError(f"{d} holds no images: allowed <class>/ sub-folders with image files "
                        f"({', '.join(sorted(_IMAGE_EXTS))})")
    return ImageFolderDataset(tuple(paths), torch.tensor(labels, dtype=torch.int64), classes,
                              image_size, IMAGENET_MEAN, IMAGENET_STD, f"folder:{root}/{d.name}")
