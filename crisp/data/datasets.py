"""Data set containers shared by the loaders, their normalisation constants and argument checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crisp.errors import UserError

#: Per-channel mean and std (in [0, 1] units) used to normalise each data set's images.
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_SPLITS = ("train", "test")


def _norm_tensors(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
    return m, s


class _Samples:
    """``ds[i] -> (normalised float image, label)`` and ``num_classes`` for both containers.

    Subclasses provide ``load_uint8(i)``, ``labels``, ``classes``, ``transform`` and ``_norm``.
    """

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        m, s = self._norm
        x = (self.load_uint8(i).to(torch.float32) / 255.0 - m) / s
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)


@dataclass(frozen=True, eq=False)
class ImageDataset(_Samples):
    """An in-memory image classification data set; works with ``torch.utils.data.DataLoader``.

    Attributes:
        images: uint8 tensor [N, C, H, W], pixel values 0..255.
        labels: int64 tensor [N], values in ``0..len(classes)-1``.
        classes: class names, index = label.
        mean, std: per-channel normalisation in [0, 1] units (length C).
        name: a short description (e.g. ``"glyph100/train/seed0"``).
        transform: optional function applied to the normalised float image [C, H, W] in
            ``__getitem__`` (e.g. augmentation).

    ``ds[i]`` returns ``(x, y)``: x a float32 tensor [C, H, W] equal to
    ``(images[i] / 255 - mean) / std``, y an int label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    name: str = ""
    transform: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N,C,H,W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 [N={self.images.shape[0]}], got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError("mean/std need one value per channel")
        object.__setattr__(self, "_norm", _norm_tensors(self.mean, self.std))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def load_uint8(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 [C, H, W]."""
        return self.images[i]

    def normalised(self) -> torch.Tensor:
        """All images as one normalised float32 tensor [N, C, H, W] (no transform applied)."""
        m, s = self._norm
        return (self.images.to(torch.float32) / 255.0 - m) / s

    def resized(self, size: int, chunk: int = 4096) -> ImageDataset:
        """The same data set with every image resized to ``size x size`` pixels (bilinear,
        antialiased when shrinking; itself when the images already have that size).

        Grey images stored as a 3-channel stride-0 view stay one (only one channel is resized).
        """
        size = _check_count("image_size", size)
        n, c, h, w = self.images.shape
        if (h, w) == (size, size):
            return self
        grey = c > 1 and self.images.stride(1) == 0
        src = self.images[:, :1] if grey else self.images
        out = torch.empty((n, src.shape[1], size, size), dtype=torch.uint8)
        for a in range(0, n, chunk):
            part = torch.nn.functional.interpolate(
                src[a:a + chunk].to(torch.float32), size=(size, size), mode="bilinear",
                align_corners=False, antialias=size < max(h, w))
            out[a:a + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
        images = out.expand(-1, c, -1, -1) if grey else out
        return ImageDataset(images, self.labels, list(self.classes), self.mean, self.std,
                            f"{self.name}@{size}px", self.transform)

    def subset(self, indices: Sequence[int] | torch.Tensor,
               label_map: dict[int, int] | None = None,
               classes: list[str] | None = None) -> ImageDataset:
        """Rows ``indices`` (in that order); labels relabelled through ``label_map`` if given."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        labels = self.labels[idx]
        if label_map is not None:
            labels = torch.tensor([label_map[int(v)] for v in labels], dtype=torch.int64)
        return ImageDataset(self.images[idx], labels, list(classes or self.classes),
                            self.mean, self.std, self.name, self.transform)


@dataclass(frozen=True, eq=False)
class ImageFolderDataset(_Samples):
    """An ImageNet-style folder data set; images are decoded lazily, one per ``__getitem__``.

    Attributes:
        paths: image files, one per sample.
        labels: int64 tensor [N] (index into ``classes``).
        classes: class (sub-folder) names, sorted.
        image_size: output side in pixels: the shorter side is resized to it (bilinear),
            then the centre is cropped to ``image_size x image_size``.
        mean, std: per-channel normalisation in [0, 1] units (ImageNet values by default).
        name: a short description.
        transform: optional function applied to the normalised float image [3, S, S].

    ``ds[i]`` returns ``(x, y)``: x float32 [3, image_size, image_size], y an int label.
    """

    paths: tuple[Path, ...]
    labels: torch.Tensor
    classes: list[str]
    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    name: str = ""
    transform: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.labels.shape != (len(self.paths),):
            raise ValueError(f"labels must be int64 [N={len(self.paths)}]")
        object.__setattr__(self, "_norm", _norm_tensors(self.mean, self.std))

    def __len__(self) -> int:
        return len(self.paths)

    def load_uint8(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 [3, image_size, image_size], resized and centre-cropped."""
        from PIL import Image

        try:
            im = Image.open(self.paths[i])
            im.load()
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise UserError(f"{self.paths[i]} is not a readable image ({err}): every file with an "
                            "image extension in the folder must be an image") from None
        with im:
            im = im.convert("RGB")
            w, h = im.size
            scale = self.image_size / min(w, h)
            nw, nh = max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))
            im = im.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - self.image_size) // 2, (nh - self.image_size) // 2
            im = im.crop((left, top, left + self.image_size, top + self.image_size))
            arr = np.asarray(im, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


    def subset(self, indices: Sequence[int] | torch.Tensor,
               label_map: dict[int, int] | None = None,
               classes: list[str] | None = None) -> ImageFolderDataset:
        """Rows ``indices`` (in that order); labels relabelled through ``label_map`` if given."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        labels = self.labels[idx]
        if label_map is not None:
            labels = torch.tensor([label_map[int(v)] for v in labels], dtype=torch.int64)
        return ImageFolderDataset(tuple(self.paths[int(i)] for i in idx), labels,
                                  list(classes or self.classes), self.image_size, self.mean,
                                  self.std, self.name, self.transform)


#: Either kind of data set returned by the loaders.
Dataset = ImageDataset | ImageFolderDataset


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------


def _check_split(split: str) -> str:
    s = split.lower() if isinstance(split, str) else split
    if s == "val":
        s = "test"
    if s not in _SPLITS:
        raise UserError(f"split {split!r} not allowed: allowed 'train', 'test' (or 'val')")
    return s


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed {seed!r} not allowed: allowed an integer >= 0")
    return int(seed)


def _check_count(what: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"{what} {n!r} not allowed: allowed an integer >= 1")
    return int(n)
