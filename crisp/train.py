"""Training, fine-tuning and evaluation loops (seeded; a tqdm bar on a terminal), on any device.

The optimiser is the public CRISP code's: SGD, momentum 0.9, weight decay 5e-4, lr 0.01 for
fine-tuning, a linear warm-up over the first ``warmup`` fraction of the steps then a cosine decay
to zero. All shuffling and augmentation draw from one ``torch.Generator``.

Labels: a model with the full head is trained and scored on the original class ids (arg-max over
all classes, as the paper's code). With a head shrunk to the user's classes, ``label_map`` (a long
tensor indexed by original class id, -1 for other classes) turns ids into head indices.

Where: every loop takes a `crisp.devices.Runtime` (device, bf16 autocast, DataLoader
workers, pinned memory, channels_last; None = the CPU). Under ``torchrun`` training runs in
``DistributedDataParallel`` over a ``DistributedSampler`` and evaluation adds up disjoint shards
(`crisp.distributed`); with one process nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from crisp import distributed, ranges
from crisp.console import progress_bar
from crisp.devices import Runtime, as_runtime
from crisp.errors import UserError
from crisp.masks import classifier_name
from crisp.recovery import BalancedSampler, Distiller, labels_of


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
        balanced: class-balanced batches (`crisp.recovery.BalancedSampler`) instead of a plain
            shuffle.
    """

    epochs: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.1
    batch_size: int = 64
    augment: bool = False
    balanced: bool = False

    def __post_init__(self) -> None:
        ranges.EPOCHS.check(self.epochs, "epochs")
        ranges.LR.check(self.lr, "learning rate")
        ranges.WARMUP.check(self.warmup, "warm-up fraction")
        ranges.BATCH_SIZE.check(self.batch_size, "batch size")

    def as_dict(self) -> dict[str, object]:
        """The settings as a JSON-ready dict."""
        return asdict(self)


def loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator,
    runtime: Runtime | None = None,
    sampler: torch.utils.data.Sampler | None = None,
) -> DataLoader:
    """A DataLoader whose shuffling draws from ``generator`` (or from ``sampler`` when given).

    ``runtime`` sets the worker processes and pinned memory (on CUDA).
    """
    rt = as_runtime(runtime)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, generator=generator, num_workers=rt.workers,
                      pin_memory=rt.pin_memory)


def _batches(
    data: DataLoader, label_map: torch.Tensor | None, runtime: Runtime | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    rt = as_runtime(runtime)
    for images, labels in data:
        labels = labels.long()
        if label_map is not None:
            labels = label_map[labels]
            if bool((labels < 0).any()):
                raise UserError("a label outside the user's classes reached a shrunk head")
        yield rt.batch(images), labels.to(rt.device, non_blocking=rt.pin_memory)


def _sampler(dataset: Dataset, generator: torch.Generator) -> DistributedSampler | None:
    """This rank's shuffled share under ``torchrun`` (seed drawn from ``generator``, the same on
    every rank), None with one process (then ``generator`` is not touched)."""
    if not distributed.active():
        return None
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return distributed.sampler(dataset, True, seed)


def user_batches(
    dataset: Dataset,
    batch_size: int,
    generator: torch.Generator,
    label_map: torch.Tensor | None,
    runtime: Runtime | None = None,
    shard: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled ``(float images, head labels)`` minibatches of ``dataset`` (one pass).

    Under ``torchrun`` with ``shard`` each rank gets its own 1/N of the data.
    """
    sampler = _sampler(dataset, generator) if shard else None
    return _batches(loader(dataset, batch_size, True, generator, runtime, sampler), label_map,
                    runtime)


def _shift(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels (zero fill), offsets drawn from ``generator``.

    The offsets are drawn on the CPU (``generator`` is a CPU generator), the shift runs where
    ``images`` are.
    """
    n, _, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :]
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(images.shape[1], device=dev)[None, :, None, None]
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
    runtime: Runtime | None = None,
    distiller: Distiller | None = None,
) -> float:
    """Train ``model`` in place for ``config.epochs`` epochs of cross-entropy (or of
    ``distiller``'s loss).

    Args:
        dataset: ``(image [C, H, W], class id)`` samples.
        generator: the source of shuffling and augmentation randomness.
        label_map: class id -> head index for a shrunk head (None: ids are head indices).
        after_backward: called after each backward pass, before the optimiser step (e.g.
            `crisp.saliency.GradientMeter.update`).
        desc: label of the progress bar.
        runtime: device, autocast, workers (None: the CPU). Under ``torchrun`` the model trains
            in ``DistributedDataParallel`` (``config.batch_size`` images per rank and step) and
            every rank ends with rank 0's buffers (BatchNorm statistics).
        distiller: mixes distillation from a dense teacher into the loss (None: cross-entropy).

    Returns:
        mean training loss over the last epoch, over all ranks (nan when ``epochs`` is 0).

    Raises:
        UserError: a step's loss, or a weight at the end, is not finite (names the step).
    """
    if config.epochs == 0:
        return math.nan
    rt = as_runtime(runtime)
    if config.balanced:
        sampler = BalancedSampler(labels_of(dataset), generator, distributed.rank(),
                                  distributed.world_size())
    else:
        sampler = _sampler(dataset, generator)
    data = loader(dataset, config.batch_size, True, generator, rt, sampler)
    total = config.epochs * len(data)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_warmup(total, config.warmup))
    model.train()
    net = distributed.wrap(model, rt)
    bar = progress_bar(progress=distributed.is_main(), total=total, desc=desc, leave=False,
                       dynamic_ncols=True)
    loss_sum = torch.zeros((), dtype=torch.float64, device=rt.device)
    seen = 0
    try:
        for epoch in range(config.epochs):
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            loss_sum.zero_()
            seen = 0
            for images, labels in _batches(data, label_map, rt):
                if config.augment:
                    images = _shift(images, generator)
                opt.zero_grad(set_to_none=True)
                with rt.autocast():
                    logits = net(images)
                    loss = (F.cross_entropy(logits, labels) if distiller is None
                            else distiller.loss(logits, images, labels))
                if not bool(torch.isfinite(loss)):  # one device sync a step: cheap beside it
                    raise UserError(f"{desc}: the loss is {float(loss.detach())} at step "
                                    f"{bar.n + 1} of {total}: training diverged; lower the "
                                    f"learning rate ({config.lr:g})")
                loss.backward()
                if after_backward is not None:
                    after_backward()
                opt.step()
                sched.step()
                loss_sum += loss.detach().double() * len(labels)
                seen += len(labels)
                bar.update()
                if bar.n % 10 == 0 or bar.n == total:  # .item() waits for the device: not always
                    bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}")
    finally:
        bar.close()
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise UserError(f"{desc}: weight {bad[0]} is not finite after {total} steps: training "
                        f"diverged; lower the learning rate ({config.lr:g})")
    distributed.broadcast_state(model)
    totals = distributed.all_reduce_sum(
        torch.tensor([float(loss_sum), seen], dtype=torch.float64))
    return float(totals[0] / max(float(totals[1]), 1.0))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    label_map: torch.Tensor | None = None,
    batch_size: int = 256,
    runtime: Runtime | None = None,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent), mean cross-entropy and the number of distinct predicted
    classes (``predicted``) of ``model`` on ``dataset``.

    With the full head the arg-max runs over all classes; with a shrunk head over the user's.
    ``predicted`` is 1 when the model gives every image the same class (a collapse, unless the
    data holds one class). Under ``torchrun`` each rank scores a disjoint shard and the counts are
    added (exact).
    """
    rt = as_runtime(runtime)
    model.eval()
    # correct top-1, correct top-5, loss sum, images: summed on the device, read once at the end
    sums = torch.zeros(4, dtype=torch.float64, device=rt.device)
    outputs = model.get_submodule(classifier_name(model)).out_features
    votes = torch.zeros(outputs, dtype=torch.float64, device=rt.device)  # images per class
    data = loader(distributed.shard(dataset), batch_size, False, torch.Generator(), rt)
    for images, labels in _batches(data, label_map, rt):
        with rt.autocast():
            logits = model(images)
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        votes += torch.bincount(top[:, 0], minlength=outputs).double()
        sums += torch.stack([
            (top[:, 0] == labels).sum().double(),
            (top == labels[:, None]).any(dim=1).sum().double(),
            F.cross_entropy(logits, labels, reduction="sum").double(),
            torch.tensor(float(len(labels)), dtype=torch.float64, device=rt.device),
        ])
    totals = distributed.all_reduce_sum(torch.cat([sums, votes]).cpu())
    correct1, correct5, loss_sum, seen = totals[:4].tolist()
    if seen == 0:
        raise UserError("evaluation data set is empty")
    return {"top1": 100 * correct1 / seen, "top5": 100 * correct5 / seen, "loss": loss_sum / seen,
            "predicted": int(torch.count_nonzero(totals[4:]))}
