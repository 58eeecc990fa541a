"""How a pruned model recovers with the few images a user has, the same for every scheme.

Five parts, each a setting of `RecoveryConfig`, so every scheme gets the same recovery. The
first three can be switched off from the command line (``--no-distill``, ``--no-recalibrate``,
``--no-balanced``) to measure what they give; the step minimum only from Python
(``RecoveryConfig(min_steps=1)``); the validation split is always on (``--val-share`` sizes it):

- **Distillation** (`Distiller`): every fine-tuning step mixes cross-entropy on the labels with
  the KL divergence from the dense model's softened logits,
  ``(1 - w) * CE(s, y) + w * T^2 * KL(softmax(t / T) || softmax(s / T))`` (Hinton et al.,
  2015); the ``T^2`` keeps the soft term's gradients on the scale of the hard term's. The teacher
  is a frozen copy of the dense model, in eval mode, without gradients, on the same device.
  With the full head the KL runs over all classes' logits (they decide the arg-max); with a head
  shrunk to the user's classes over the teacher's logits of those classes.
- **BatchNorm recalibration** (`recalibrate_batchnorm`): after every mask change (and channel
  removal) and after fine-tuning, every BatchNorm's running mean and variance are re-estimated
  from the user-class training images (a cumulative average over one pass in train mode, no
  gradient step; at most ``recalibration_images`` of them, class-balanced). Pruning changes
  every activation's scale; without it the running statistics,
  which evaluation uses (and the eval-mode gradient passes: the first saliency pass, one after a
  round without fine-tuning, channel pruning's Taylor importance), stay the dense model's, and a
  few fine-tuning steps in train mode move them only part of the way.
- **Class-balanced batches** (`BalancedSampler`): each epoch's order spreads every class evenly
  over the batches, so a few dozen steps never see a batch of one class.
- **Enough steps** (`RecoveryConfig.batch_size`): the fine-tuning batch shrinks so that an epoch
  has at least ``min_steps`` (8) steps: 32 images a class of 3 classes in batches of 64 gave 2
  SGD steps a round, too few to recover from a mask change (block and channel pruning ended
  near chance; with 4 steps a round some seeds still ended below 80 percent, with 8 none did).
  The learning-rate schedule stays per round (warm-up, then cosine to zero): with enough steps a
  round recovers, and a round is what follows each mask change.
- **A validation split** (`split_validation`): a seeded share of each class's training images is
  held out of fine-tuning; the per-round checks (`check_round`) and every choice made on a run
  (the benchmarks' iso-accuracy pick) read it; the test images are only reported.

When a round's recovery fails (`check_round`: its validation loss ends more than 5 percent,
and more than 0.01, above where it stood after the mask change, its validation top-1 fell more
than ``warn_margin`` points below the previous round's, or it predicts one class for several)
the pruner prints one warning line with the numbers on stderr and keeps it in the record.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from crisp import ranges
from crisp.devices import Runtime, as_runtime
from crisp.errors import UserError


@dataclass(frozen=True)
class RecoveryConfig:
    """The recovery of every fine-tuning round, the same for every scheme.

    Attributes:
        distill: distil from the dense model during fine-tuning.
        temperature: softening temperature T of the distillation (> 0; default 4).
        distill_weight: share w of the distillation term in the loss, in [0, 1] (default 0.5;
            0 = labels only, 1 = teacher only).
        recalibrate: re-estimate the BatchNorm statistics after every mask change and after
            fine-tuning.
        balanced: class-balanced fine-tuning batches.
        val_share: share of each class's training images held out for validation, in (0, 0.5]
            (default 0.2, at least one image a class).
        warn_margin: a round whose validation top-1 falls more than this many points below the
            previous round's gets a warning (default 5).
        min_steps: the fewest optimiser steps an epoch of fine-tuning takes (>= 1, default 8):
            the batch shrinks below the configured one where the data is small.
        recalibration_images: the most fine-tuning images a recalibration reads (>= 1, default
            512: BatchNorm statistics settle within a few hundred images, and two passes a
            round over thousands would cost more than the fine-tuning's extra teacher pass);
            a larger set gives a class-balanced subset of this size, drawn once a run.
    """

    distill: bool = True
    temperature: float = 4.0
    distill_weight: float = 0.5
    recalibrate: bool = True
    balanced: bool = True
    val_share: float = 0.2
    warn_margin: float = 5.0
    min_steps: int = 8
    recalibration_images: int = 512

    def __post_init__(self) -> None:
        ranges.TEMPERATURE.check(self.temperature, "distillation temperature")
        ranges.FRACTION.check(self.distill_weight, "distillation weight")
        ranges.VAL_SHARE.check(self.val_share, "validation share")
        ranges.PERCENT.check(self.warn_margin, "warning margin (points)")
        if not (isinstance(self.min_steps, int) and self.min_steps >= 1):
            raise UserError(f"minimum steps per epoch {self.min_steps!r} must be an integer >= 1")
        if not (isinstance(self.recalibration_images, int) and self.recalibration_images >= 1):
            raise UserError(f"recalibration images {self.recalibration_images!r} must be an "
                            "integer >= 1")

    def batch_size(self, batch_size: int, images: int) -> int:
        """The fine-tuning batch: ``batch_size``, or fewer images so that ``images`` take at least
        ``min_steps`` steps (never below 1)."""
        return max(1, min(batch_size, math.ceil(images / self.min_steps)))

    def as_dict(self) -> dict[str, object]:
        """The settings as a JSON-ready dict."""
        return asdict(self)


def labels_of(dataset: Dataset) -> torch.Tensor:
    """The class id of every sample of ``dataset`` as a long tensor (in sample order)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].long()
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    if hasattr(dataset, "labels"):
        return torch.as_tensor(dataset.labels).long()
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)


def split_validation(dataset: Dataset, share: float, seed: int) -> tuple[Dataset, Dataset]:
    """Hold out ``ceil(share * n_c)`` images of every class c for validation, drawn from ``seed``.

    Returns:
        (fine-tuning images, validation images), both subsets of ``dataset`` in its order.

    Raises:
        UserError: ``share`` is outside (0, 0.5], or a class has too few images to leave one on
            each side.
    """
    RecoveryConfig(val_share=share)  # the same check, the same message
    labels = labels_of(dataset)
    generator = torch.Generator().manual_seed(seed)
    held: list[int] = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        count = math.ceil(share * len(members))
        if count >= len(members):
            raise UserError(f"validation share {share:g} leaves class {c} without training "
                            f"images (it has {len(members)}): give it at least 2 images")
        order = torch.randperm(len(members), generator=generator)
        held += members[order[:count]].tolist()
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    is_val[held] = True
    return (Subset(dataset, torch.nonzero(~is_val).flatten().tolist()),
            Subset(dataset, torch.nonzero(is_val).flatten().tolist()))


def balanced_subset(dataset: Dataset, size: int, seed: int) -> Dataset:
    """At most ``size`` samples of ``dataset``, every class in proportion, in the data set's
    order (all of it, as it is, when it holds no more); drawn from ``seed``."""
    if len(dataset) <= size:
        return dataset
    order = list(BalancedSampler(labels_of(dataset), torch.Generator().manual_seed(seed)))
    return Subset(dataset, sorted(order[:size]))


class BalancedSampler(Sampler[int]):
    """Class-balanced order of a data set's samples: every class spread evenly over the epoch.

    Each class's samples are shuffled, the i-th of a class with n samples gets the position
    ``(i + u) / n`` (u uniform in [0, 1)), and the epoch visits samples by position, so any run of
    B consecutive samples (a batch) holds ``B * n / N`` of a class of n in N, give or take
    ``2 + 2 * C * n / N`` (C classes), where a shuffle can put one class in a whole batch. Every
    draw comes from ``generator``. With ``world > 1`` (``torchrun``) rank r takes every world-th
    sample from r on, the order padded by wrapping round so every rank gets as many.
    """

    def __init__(self, labels: torch.Tensor, generator: torch.Generator, rank: int = 0,
                 world: int = 1) -> None:
        self.labels = labels
        self.generator = generator
        self.rank = rank
        self.world = world

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.world)

    def __iter__(self) -> Iterator[int]:
        position = torch.empty(len(self.labels), dtype=torch.float64)
        for c in torch.unique(self.labels).tolist():
            members = torch.nonzero(self.labels == c).flatten()
            n = len(members)
            order = members[torch.randperm(n, generator=self.generator)]
            jitter = torch.rand(n, generator=self.generator, dtype=torch.float64)
            position[order] = (torch.arange(n, dtype=torch.float64) + jitter) / n
        order = torch.argsort(position, stable=True).tolist()
        wanted = len(self) * self.world
        padded = (order * math.ceil(wanted / max(1, len(order))))[:wanted]
        return iter(padded[self.rank:: self.world])


class Distiller:
    """The fine-tuning loss with distillation from a frozen copy of the dense ``teacher``.

    Args:
        teacher: the dense model (copied, frozen, kept in eval mode on its device).
        temperature: T (> 0).
        weight: w in [0, 1], the share of the distillation term.
        index: head positions of the user's classes in the teacher's logits when the student's
            head is shrunk to them (None: the student has the teacher's full head).
    """

    def __init__(self, teacher: nn.Module, temperature: float, weight: float,
                 index: torch.Tensor | None = None) -> None:
        self.teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        self.temperature = temperature
        self.weight = weight
        self.index = index

    def loss(self, logits: torch.Tensor, images: torch.Tensor, labels: torch.Tensor
             ) -> torch.Tensor:
        """``(1 - w) * CE(logits, labels) + w * T^2 * KL(teacher || student)`` on one batch."""
        hard = F.cross_entropy(logits, labels)
        if self.weight == 0:
            return hard
        with torch.no_grad():
            target = self.teacher(images).float()
        if self.index is not None:
            target = target[:, self.index.to(target.device)]
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits.float() / t, dim=1), F.log_softmax(target / t, dim=1),
                        reduction="batchmean", log_target=True)
        return (1 - self.weight) * hard + self.weight * t * t * soft


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """``model``'s BatchNorm layers (of any dimension), the ones recalibration re-estimates."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Dataset, runtime: Runtime | None = None,
                          batch_size: int = 64) -> int:
    """Re-estimate every BatchNorm's running statistics from ``dataset``, in place.

    One pass in train mode under ``no_grad`` with the statistics reset and the momentum set to
    None (a cumulative average over the batches); weights, biases and the model's mode are left
    as they were. Every rank (``torchrun``) reads all of ``dataset`` in its order, so all get the
    same statistics without communicating.

    Returns:
        the number of BatchNorm layers recalibrated (0: nothing done).
    """
    norms = batchnorm_layers(model)
    if not norms or len(dataset) == 0:
        return 0
    rt = as_runtime(runtime)
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        data = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=rt.workers,
                          pin_memory=rt.pin_memory)
        for images, _ in data:
            with rt.autocast():
                model(rt.batch(images))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


#: The relative rise of the validation loss over a round's fine-tuning that `check_round`
#: still accepts.
LOSS_TOLERANCE = 0.05

#: The absolute rise (nats) that `check_round` still accepts: a model near perfect has a loss
#: near zero, whose relative changes are noise.
LOSS_FLOOR = 0.01


def check_round(t: int, loss_start: float, loss_end: float, top1_previous: float,
                top1_now: float, margin: float, predicted: int, classes: int) -> str | None:
    """Why round ``t``'s recovery failed, as one line with the numbers, or None when it did not.

    Args:
        loss_start: validation loss (cross-entropy) right after the round's mask change
            (recalibrated).
        loss_end: validation loss after its fine-tuning; more than `LOSS_TOLERANCE` (relative)
            and more than `LOSS_FLOOR` (absolute) above ``loss_start`` is a failure (a smaller
            rise is noise of a model already near perfect).
        top1_previous: validation top-1 (%) at the end of the previous round (round 0: the dense
            model's).
        top1_now: validation top-1 (%) at the end of this round.
        margin: the largest drop of top-1 (points) that is not reported.
        predicted: distinct classes the model predicts on the validation images.
        classes: the user's classes (a model predicting one of several has collapsed).
    """
    problems = []
    if loss_end > loss_start * (1 + LOSS_TOLERANCE) and loss_end - loss_start > LOSS_FLOOR:
        problems.append(f"fine-tuning raised the validation loss {loss_start:.3f} -> "
                        f"{loss_end:.3f}")
    if top1_now < top1_previous - margin:
        problems.append(f"validation top-1 fell {top1_previous:.1f}% -> {top1_now:.1f}% (more "
                        f"than {margin:g} points)")
    if predicted == 1 < classes:
        problems.append(f"the model predicts a single class for all {classes} user classes")
    if not problems:
        return None
    return f"round {t}: recovery failed: {'; '.join(problems)}"
