"""Training, fine-tuning and evaluation loops (CPU-friendly, seeded, with a tqdm bar).

The optimiser is the public CRISP code's: SGD, momentum 0.9, weight decay 5e-4, lr 0.01 for
fine-tuning, a linear warm-up over the first ``warmup`` fraction of the steps then a cosine decay
to zero. All shuffling and augmentation draw from one ``torch.Generator``.

Labels: a model with the full head is trained and scored on the original class ids (arg-max over
all classes, as the paper's code). With a head shrunk to the user's classes, ``label_map`` (a long
tensor indexed by original class id, -1 for other classes) turns ids into head indices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from crisp.errors import UserError


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and loop settings.

    Attributes:
        epochs: passes over the data (0 = no training).
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        warmup: fraction of the steps spent in linear warm-up, in [0, 1).
        batch_size: images per step.
        augment: random 4-pixel shifts (zero padding) of the training images; no flips (glyphs).
    """

    epochs: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.1
    batch_size: int = 64
    augment: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise UserError(f"epochs {self.epochs} must be >= 0")
        if self.lr <= 0:
            raise UserError(f"learning rate {self.lr} must be > 0")
        if not 0 <= self.warmup < 1:
            raise UserError(f"warm-up fraction {self.warmup} must be in [0, 1)")
        if self.batch_size < 1:
            raise UserError(f"batch size {self.batch_size} must be >= 1")

    def as_dict(self) -> dict[str, object]:
        """The settings as a JSON-ready dict."""
        return asdict(self)


def loader(
    dataset: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator
) -> DataLoader:
    """A single-process DataLoader whose shuffling draws from ``generator``."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _batches(
    data: DataLoader, label_map: torch.Tensor | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for images, labels in data:
        images = images.float()
        labels = labels.long()
        if label_map is not None:
            labels = label_map[labels]
            if bool((labels < 0).any()):
                raise UserError("a label outside the user's classes reached a shrunk head")
        yield images, labels


def user_batches(
    dataset: Dataset, batch_size: int, generator: torch.Generator, label_map: torch.Tensor | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled ``(float images, head labels)`` minibatches of ``dataset`` (one pass)."""
    return _batches(loader(dataset, batch_size, True, generator), label_map)


def _shift(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels (zero fill), offsets drawn from ``generator``."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chan = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, chan, rows, cols]


def cosine_warmup(total_steps: int, warmup: float) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up over ``warmup * total`` steps, then cosine."""
    warm = math.ceil(warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        span = max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / span)))

    return factor


def train_epochs(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    generator: torch.Generator,
    label_map: torch.Tensor | None = None,
    after_backward: Callable[[], None] | None = None,
    desc: str = "train",
) -> float:
    """Train ``model`` in place for ``config.epochs`` epochs of cross-entropy.

    Args:
        dataset: ``(image [C, H, W], class id)`` samples.
        generator: the source of shuffling and augmentation randomness.
        label_map: class id -> head index for a shrunk head (None: ids are head indices).
        after_backward: called after each backward pass, before the optimiser step (e.g.
            :meth:`crisp.saliency.GradientMeter.update`).
        desc: label of the progress bar.

    Returns:
        mean training loss over the last epoch (nan when ``epochs`` is 0).
    """
    if config.epochs == 0:
        return math.nan
    data = loader(dataset, config.batch_size, True, generator)
    total = config.epochs * len(data)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_warmup(total, config.warmup))
    model.train()
    bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
    loss_sum, seen = 0.0, 0
    try:
        for _epoch in range(config.epochs):
            loss_sum, seen = 0.0, 0
            for images, labels in _batches(data, label_map):
                if config.augment:
                    images = _shift(images, generator)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(images), labels)
                loss.backward()
                if after_backward is not None:
                    after_backward()
                opt.step()
                sched.step()
                loss_sum += loss.item() * len(labels)
                seen += len(labels)
                bar.update()
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
    finally:
        bar.close()
    return loss_sum / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    label_map: torch.Tensor | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy of ``model`` on ``dataset``.

    With the full head the arg-max runs over all classes; with a shrunk head over the user's.
    """
    model.eval()
    correct1 = correct5 = 0
    loss_sum, seen = 0.0, 0
    data = loader(dataset, batch_size, False, torch.Generator())
    for images, labels in _batches(data, label_map):
        logits = model(images)
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += int((top[:, 0] == labels).sum())
        correct5 += int((top == labels[:, None]).any(dim=1).sum())
        seen += len(labels)
    if seen == 0:
        raise UserError("evaluation data set is empty")
    return {"top1": 100 * correct1 / seen, "top5": 100 * correct5 / seen, "loss": loss_sum / seen}
