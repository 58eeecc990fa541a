"""One pruning run's fine-tuning rounds, with the same recovery for every scheme.

`Recovery` holds what every round of a run shares: the user's fine-tuning, validation and test
images, the dense teacher (`crisp.recovery.Distiller`), the seeded generator and the device.
`Recovery.round` is one round after a mask change or channel removal: recalibrate BatchNorm,
score the validation images, fine-tune, recalibrate again, score validation and test images, and
check the recovery (`crisp.recovery.check_round`: a failed one prints one warning line and is
kept in the round's metrics). The mask schemes (`crisp.pruner`) and the model-level
baselines (`crisp.baselines`) both drive it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn
from torch.utils.data import Dataset

from crisp import distributed
from crisp.config import PruneConfig
from crisp.devices import Runtime, as_runtime
from crisp.recovery import (
    Distiller,
    balanced_subset,
    check_round,
    recalibrate_batchnorm,
    split_validation,
)
from crisp.train import evaluate, train_epochs


class Recovery:
    """The fine-tuning of one run: data splits, teacher and the round-to-round check.

    Args:
        teacher: the dense model (full head) before anything is pruned; copied.
        train_data: the user's training images; `crisp.recovery.split_validation` holds
            ``config.recovery.val_share`` of each class out of fine-tuning.
        test_data: the user's test images (reported, never used for a choice).
        classes: the user's class ids (the teacher's logits the KL reads under a shrunk head).
        config: the run's settings (``recovery``, ``train``, ``epochs``, ``head``).
        generator: the run's seeded generator (shuffling, augmentation).
        seed: seeds the validation split.
        label_map: class id -> head index for a shrunk head, else None.
        runtime: where to compute (None: the CPU).
    """

    def __init__(self, teacher: nn.Module, train_data: Dataset, test_data: Dataset,
                 classes: list[int], config: PruneConfig, generator: torch.Generator, seed: int,
                 label_map: torch.Tensor | None = None, runtime: Runtime | None = None) -> None:
        rec = config.recovery
        self.config = config
        self.train, self.val = split_validation(train_data, rec.val_share, seed)
        self.calibration = balanced_subset(self.train, rec.recalibration_images, seed)
        self.test = test_data
        self.generator = generator
        self.label_map = label_map
        self.runtime = as_runtime(runtime)
        index = torch.tensor(classes) if config.head == "shrink" else None
        self.distiller = (Distiller(teacher, rec.temperature, rec.distill_weight, index)
                          if rec.distill else None)
        self.num_classes = len(classes)
        self.previous_top1 = float("nan")
        self.warnings: list[str] = []

    def scores(self, model: nn.Module) -> dict[str, float]:
        """Test metrics (``top1``, ``top5``, ``loss``, ``predicted``: `crisp.train.evaluate`)
        and the same of the validation images (``val_top1``, ...)."""
        val = evaluate(model, self.val, self.label_map, runtime=self.runtime)
        test = evaluate(model, self.test, self.label_map, runtime=self.runtime)
        return {**test, **{f"val_{k}": v for k, v in val.items()}}

    def start(self, model: nn.Module) -> dict[str, float]:
        """The scores of the model before pruning (the first round's reference)."""
        before = self.scores(model)
        self.previous_top1 = before["val_top1"]
        return before

    def recalibrate(self, model: nn.Module) -> None:
        """Re-estimate BatchNorm statistics on the fine-tuning images (at most
        ``recovery.recalibration_images`` of them, `crisp.recovery.balanced_subset`)."""
        recalibrate_batchnorm(model, self.calibration, self.runtime,
                              self.config.train.batch_size)

    def round(self, model: nn.Module, t: int, desc: str, epochs: int | None = None,
              after_backward: Callable[[], None] | None = None, pruned: bool = True
              ) -> dict[str, object]:
        """Recover ``model`` after round ``t``'s pruning, in place.

        Args:
            desc: the progress bar's label (``"hybrid round 2/5"``).
            epochs: fine-tuning epochs (None: the config's epochs per round).
            after_backward: called after every backward pass (the saliency meter).
            pruned: False for the dense baseline, which nothing was pruned from: no
                recalibration (no mask change to follow) and no distillation (its teacher would
                be itself, and the soft targets over all classes would only hold it back from
                the user's classes: on glyph100-hard with 5 and 10 user classes the distilled
                dense model ended a few points lower, which would lower the iso-accuracy line
                for every scheme). Balanced batches and the step minimum stay.

        Returns:
            the round's metrics: ``train_loss``, test ``top1``/``top5``/``loss``, ``val_top1``,
            ``val_top5``, ``val_loss``, and before fine-tuning ``val_top1_start`` and
            ``val_loss_start`` (after recalibration: what recalibration alone recovers),
            ``batch_size`` (the fine-tuning batch, `crisp.recovery.RecoveryConfig.batch_size`),
            ``distilled`` and ``recalibrated`` (what the round did) and ``warning`` (None when
            the recovery held).
        """
        tune = self.config.fine_tune()
        share = math.ceil(len(self.train) / distributed.world_size())  # this rank's images
        batch = self.config.recovery.batch_size(tune.batch_size, share)
        tune = replace(tune, batch_size=batch, epochs=tune.epochs if epochs is None else epochs)
        recalibrate = pruned and self.config.recovery.recalibrate
        if recalibrate:
            self.recalibrate(model)
        start = evaluate(model, self.val, self.label_map, runtime=self.runtime)
        loss = train_epochs(model, self.train, tune, self.generator, self.label_map,
                            after_backward, desc=desc, runtime=self.runtime,
                            distiller=self.distiller if pruned else None)
        if recalibrate:
            self.recalibrate(model)
        metrics = self.scores(model)
        warning = check_round(t, start["loss"], metrics["val_loss"], self.previous_top1,
                              metrics["val_top1"], self.config.recovery.warn_margin,
                              metrics["val_predicted"], self.num_classes)
        self.previous_top1 = metrics["val_top1"]
        if warning is not None:
            warning = f"{self.config.scheme} {warning}"
            self.warnings.append(warning)
            if distributed.is_main():
                print(f"warning: {warning}", file=sys.stderr, flush=True)
        return {"train_loss": loss, **metrics, "val_top1_start": start["top1"],
                "val_loss_start": start["loss"], "batch_size": batch,
                "distilled": pruned and self.distiller is not None,
                "recalibrated": recalibrate, "warning": warning}
