"""IDX files (the MNIST layout): Fashion-MNIST, MNIST, KMNIST and any folder laid out the same way.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order, big-endian. A folder holds
``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` and ``t10k-images-idx3-ubyte`` /
``t10k-labels-idx1-ubyte`` (each optionally ``.gz``; ``test-`` instead of ``t10k-`` and ``.``
instead of ``-`` before ``idx`` are accepted too).

The grey images are returned as 3-channel uint8 images (the grey value repeated, a stride-0
view: no copy) so that the zoo's RGB networks take them unchanged.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np
import torch

from crisp.data.datasets import ImageDataset, _check_split
from crisp.errors import UserError

#: Where Debian's ``dataset-fashion-mnist`` package puts its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Fashion-MNIST's class names, label order.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")

#: Per-channel mean and std (in [0, 1] units) of Fashion-MNIST's train split (3 equal channels).
FASHION_MNIST_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_MNIST_STD = (0.3530, 0.3530, 0.3530)

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILE = re.compile(r"^(train|t10k|test)-(images|labels)[.-]idx(\d)-ubyte(\.gz)?$")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) into a numpy array of its own type and shape.

    Raises:
        UserError: unreadable file, bad magic number, unknown type code, or a size that does
            not match the header.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read IDX file {path}: {type(e).__name__}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES or raw[3] == 0:
        raise UserError(f"{path} is not an IDX file: allowed a header of two zero bytes, a type "
                        f"code ({', '.join(hex(c) for c in _DTYPES)}) and 1..255 dimensions")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"IDX file {path} is truncated in its header ({len(raw)} bytes)")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_DTYPES[raw[2]])
    count = int(np.prod(shape, dtype=np.int64))
    body = len(raw) - 4 - 4 * ndim
    if body != count * dtype.itemsize:
        raise UserError(f"IDX file {path} holds {body} data bytes: its header {shape} of "
                        f"{dtype.name} needs {count * dtype.itemsize}")
    values = np.frombuffer(raw, dtype, count, 4 + 4 * ndim).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def idx_files(folder: str | os.PathLike, split: str) -> tuple[Path, Path] | None:
    """(images, labels) files of ``split`` in ``folder``, or None when the folder lacks them."""
    split = _check_split(split)
    found: dict[str, Path] = {}
    prefixes = ("train",) if split == "train" else ("t10k", "test")
    for f in sorted(Path(folder).iterdir()):
        m = _FILE.match(f.name)
        if m and f.is_file() and m.group(1) in prefixes:
            found.setdefault(m.group(2), f)
    if "images" in found and "labels" in found:
        return found["images"], found["labels"]
    return None


def is_idx_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds IDX image and label files of the train split."""
    p = Path(folder)
    return p.is_dir() and idx_files(p, "train") is not None


def load_idx(folder: str | os.PathLike, split: str = "train", *,
             classes: tuple[str, ...] | list[str] | None = None, name: str | None = None,
             mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None) -> ImageDataset:
    """Read the ``split`` of an IDX folder (MNIST layout) as an in-memory data set.

    Args:
        folder: the folder holding the ``train-*`` and ``t10k-*`` (or ``test-*``) files.
        split: ``"train"`` or ``"test"`` (``"val"`` means test).
        classes: class names (default ``"0"`` .. ``"K-1"`` for the K = max label + 1 of the
            train split).
        name: the data set's description (default ``idx:<folder>/<split>``).
        mean: normalisation mean (default Fashion-MNIST's, a fair value for grey IDX sets).
        std: normalisation standard deviation (default Fashion-MNIST's).

    Returns:
        `ImageDataset`, images uint8 [N, 3, H, W] (grey repeated on 3 channels), labels
        int64 [N].
    """
    split = _check_split(split)
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"IDX folder {root} does not exist: allowed a folder with "
                        "train-images-idx3-ubyte(.gz) and friends")
    files = idx_files(root, split)
    if files is None:
        raise UserError(f"{root} has no {split} IDX files: allowed "
                        f"{'train' if split == 'train' else 't10k'}-images-idx3-ubyte(.gz) and "
                        f"{'train' if split == 'train' else 't10k'}-labels-idx1-ubyte(.gz)")
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise UserError(f"IDX images {files[0]} have shape {images.shape} of {images.dtype}: "
                        "allowed [N, H, W] unsigned bytes")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise UserError(f"IDX labels {files[1]} have shape {labels.shape}: allowed "
                        f"[{images.shape[0]}], one per image")
    if classes is None:
        train_labels = labels if split == "train" else read_idx(idx_files(root, "train")[1])
        classes = [str(i) for i in range(int(train_labels.max(initial=0)) + 1)]
    labels = labels.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= len(classes))]
    if bad.size:
        raise UserError(f"IDX labels {files[1]} hold {int(bad[0])}: allowed 0..{len(classes) - 1}")
    grey = torch.from_numpy(images.copy()).unsqueeze(1)
    return ImageDataset(grey.expand(-1, 3, -1, -1), torch.from_numpy(labels), list(classes),
                        mean or FASHION_MNIST_MEAN, std or FASHION_MNIST_STD,
                        name or f"idx:{root}/{split}")


def fashion_mnist(split: str = "train", folder: str | os.PathLike | None = None) -> ImageDataset:
    """Fashion-MNIST (10 classes, 28x28 grey) from Debian's ``dataset-fashion-mnist`` files.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        folder: where the IDX files are (default `FASHION_MNIST_DIR`).
    """
    root = FASHION_MNIST_DIR if folder is None else Path(folder)
    if not root.is_dir():
        raise UserError(f"Fashion-MNIST not found at {root}: install it with 'apt-get install "
                        "dataset-fashion-mnist' (Debian/Ubuntu) or give --data idx:FOLDER")
    return load_idx(root, split, classes=FASHION_MNIST_CLASSES,
                    name=f"fashion-mnist/{_check_split(split)}")
