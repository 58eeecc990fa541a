"""The iterative CRISP pruner: class-aware saliency, hybrid block + N:M masks, global threshold.

One call, `prune`, prunes a model for a user's classes with any scheme of `SCHEMES`
and returns a `PruneResult` (the pruned, squashed model, its masks and a JSON-ready record
that replays the run: seed, classes, schedule, per-layer plan and per-round metrics).

The mask schemes (``hybrid``, ``nm``, ``block``, ``unstructured``) share one loop:

1. plan each Conv2d/Linear (`plan_layers`): the pattern it gets, or why it is left alone;
2. attach masks (`crisp.masks`), gather ``|dL/dW|`` over the user-class data;
3. round 0 applies N:M (``hybrid``, ``nm``); it sets the start density;
4. each later round t lowers the global density to ``schedule(...)[t]``: for block layers one
   global threshold on the block-rank scores (`select_block_ranks`), for ``unstructured``
   one global threshold on the weight scores; masks only shrink;
5. recover after every round (`crisp.finetune.Recovery`: BatchNorm recalibration,
   distillation from the dense model, class-balanced batches, a check on held-out validation
   images), gathering the next round's gradients on the way.

``channel`` and ``dense`` are in `crisp.baselines` (which never imports this module); the
settings are `crisp.config.PruneConfig`, re-exported here. Densities are always global:
non-zero weights over all Conv2d/Linear weights of the model, the excluded layers included.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from crisp import baselines, distributed
from crisp import masks as mk
from crisp.config import (  # noqa: F401  (SCHEMES, HEADS, PATTERNS, PruneConfig: public here too)
    HEADS,
    MASK_SCHEMES,
    PATTERNS,
    SCHEMES,
    PruneConfig,
)
from crisp.devices import Runtime, as_runtime
from crisp.errors import UserError
from crisp.finetune import Recovery
from crisp.layer_plan import LayerPlan, layer_plan
from crisp.patterns import (
    bitmap_of,
    block_bitmap,
    block_scores,
    expand_blocks,
    nm_mask,
    rank_scores,
)
from crisp.saliency import GradientMeter, gradient_pass, saliency
from crisp.schedule import schedule
from crisp.train import user_batches


@dataclass
class PruneResult:
    """Outcome of `prune`.

    Attributes:
        model: the pruned model, masks squashed (plain weights with zeros); for ``channel`` a
            physically smaller model.
        masks: final bool masks by dotted weight name, shaped like the weights (empty for
            ``channel`` and ``dense``).
        record: the replayable JSON-ready record (config, seed, classes, schedule, plan, rounds;
            ``world_size``, ``runtime`` and the wall-clock ``seconds`` of the gradient pass and
            each round).
        label_map: class id -> head index for a shrunk head, else None.
    """

    model: nn.Module
    masks: dict[str, torch.Tensor]
    record: dict[str, object]
    label_map: torch.Tensor | None = None

    @property
    def patterns(self) -> dict[str, str]:
        """Pattern per layer name (``hybrid``, ``nm``, ``dense``, ...), as the compressed format
        stores it; empty for ``channel`` and ``dense`` runs."""
        return {name: plan["pattern"] for name, plan in self.record.get("plan", {}).items()}

    @property
    def final(self) -> dict[str, object]:
        """Metrics of the last round (``top1``, ``top5``, ``density``, ...)."""
        return self.record["rounds"][-1]


def head_label_map(classes: list[int], outputs: int) -> torch.Tensor:
    """Class id -> head index of a head shrunk to ``classes``: a long tensor of ``outputs``
    entries, -1 for the other classes."""
    label_map = torch.full((outputs,), -1, dtype=torch.long)
    label_map[torch.tensor(classes)] = torch.arange(len(classes))
    return label_map


def shrink_head(model: nn.Module, classes: list[int]) -> torch.Tensor:
    """Cut the classifier to the rows of ``classes`` (in that order), in place.

    Returns:
        ``label_map``: `head_label_map` of ``classes``.
    """
    name = mk.classifier_name(model)
    old: nn.Linear = model.get_submodule(name)
    new = nn.Linear(old.in_features, len(classes), bias=old.bias is not None,
                    device=old.weight.device)
    index = torch.tensor(classes, device=old.weight.device)
    with torch.no_grad():
        new.weight.copy_(old.weight[index])
        if old.bias is not None:
            new.bias.copy_(old.bias[index])
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
    return head_label_map(classes, old.out_features)


def plan_layers(
    model: nn.Module, scheme: str, exclude_first: bool = True, head_pattern: str | None = None
) -> dict[str, LayerPlan]:
    """The pattern of every Conv2d/Linear (by module name) under a mask scheme, with reasons.

    `crisp.layer_plan.layer_plan` per layer (the rule the simulator's synthetic masks share):
    the first conv is the first Conv2d in module order, the classifier the last Linear
    (`crisp.masks.classifier_name`), a depthwise conv one whose groups equal its input channels.
    """
    layers = mk.gemm_layers(model)
    head = mk.classifier_name(model)
    first = next((n for n, m in layers.items() if isinstance(m, nn.Conv2d)), None)
    return {
        name: layer_plan(
            scheme, first_conv=name == first, classifier=name == head,
            depthwise=isinstance(module, nn.Conv2d) and 1 < module.groups == module.in_channels,
            exclude_first=exclude_first, head_pattern=head_pattern,
        )
        for name, module in layers.items()
    }


def _weights_total(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in mk.gemm_layers(model).values())


def _kept(model: nn.Module, names: list[str]) -> int:
    """Non-zero weights of the named (dotted weight names) layers."""
    layers = mk.gemm_layers(model)
    return sum(int(torch.count_nonzero(layers[n.removesuffix(".weight")].weight)) for n in names)


def select_block_ranks(
    scores: dict[str, torch.Tensor],
    current: dict[str, torch.Tensor],
    b: int,
    budget: int,
) -> tuple[dict[str, int], float]:
    """Blocks per block-row for each layer under one global threshold on block-rank scores.

    Ranks (`crisp.patterns.rank_scores`) of all layers are taken best first while the
    weights they keep fit in ``budget``; every layer keeps at least one block per row. Only blocks
    that still hold weights in ``current`` may be kept.

    Args:
        scores: saliency ``[C_out, K]`` by layer name.
        current: the layers' current bool masks ``[C_out, K]`` (N:M included).
        b: block size.
        budget: the most weights the block layers may keep together.

    Returns:
        (blocks kept per row by layer, the threshold: score of the last rank kept; inf if only
        the compulsory first ranks are kept).
    """
    items = []
    keep = {}
    used = 0
    for order, (name, s) in enumerate(scores.items()):
        allowed = bitmap_of(current[name], b)
        bs = block_scores(s, b).masked_fill(~allowed, -math.inf)
        ranked = torch.sort(bs, dim=1, descending=True, stable=True).indices
        counts = block_scores(current[name].to(torch.float64), b).gather(1, ranked)
        # weights added by each rank, summed over block-rows; Python lists: one device sync
        cost = counts.sum(dim=0).tolist()
        ranks = rank_scores(s, b, allowed).tolist()
        keep[name] = 1
        used += int(cost[0])
        items += [
            (-ranks[k], order, k, name, int(cost[k]))
            for k in range(1, len(ranks))
            if math.isfinite(ranks[k])
        ]
    threshold = math.inf
    for neg_score, _order, k, name, cost in sorted(items):
        if used + cost > budget:
            break
        used += cost
        keep[name] = k + 1
        threshold = -neg_score
    return keep, threshold


def _layer_densities(model: nn.Module) -> dict[str, float]:
    return {
        name: round(int(torch.count_nonzero(m.weight)) / m.weight.numel(), 6)
        for name, m in mk.gemm_layers(model).items()
    }


class _MaskPruner:
    """State of one mask-scheme run (model, plan, gradient meter); `prune` drives it."""

    def __init__(self, model: nn.Module, config: PruneConfig, plans: dict[str, LayerPlan]) -> None:
        self.model = model
        self.config = config
        self.plans = plans
        self.masked = [mk.weight_name(n) for n, p in plans.items() if p.pattern != "dense"]
        self.block = self.with_pattern("hybrid", "block")
        self.unstructured = self.with_pattern("unstructured")
        self.total = _weights_total(model)
        mk.attach(model, self.masked)
        self.meter = GradientMeter(model)

    def with_pattern(self, *patterns: str) -> list[str]:
        """Weight names of the layers whose pattern is one of ``patterns``."""
        return [mk.weight_name(n) for n, p in self.plans.items() if p.pattern in patterns]

    def matrices(self) -> dict[str, torch.Tensor]:
        return {n: m.reshape(m.shape[0], -1) for n, m in mk.get_masks(self.model).items()}

    def apply_nm(self) -> None:
        """Round 0: N:M on every layer whose pattern has it."""
        scores = saliency(self.model, self.meter.mean())
        c = self.config
        nm_layers = self.with_pattern("hybrid", "nm")
        mk.update(self.model, {n: nm_mask(scores[n], c.n, c.m) for n in nm_layers})

    def shrink_to(self, density: float) -> dict[str, object]:
        """One later round: lower the global density to at most ``density``; returns decisions."""
        scores = saliency(self.model, self.meter.mean())
        current = self.matrices()
        movable = self.block + self.unstructured
        fixed = _kept(self.model, [n for n in map(mk.weight_name, self.plans) if n not in movable])
        budget = math.floor(density * self.total) - fixed
        if self.block:
            keep, threshold = select_block_ranks(
                {n: scores[n] for n in self.block}, current, self.config.block, budget
            )
            new = {}
            for n, k in keep.items():
                allowed = bitmap_of(current[n], self.config.block)
                bitmap = block_bitmap(scores[n], self.config.block, k, allowed)
                new[n] = expand_blocks(bitmap, self.config.block, tuple(current[n].shape))
            mk.update(self.model, new)
            return {"threshold": threshold if math.isfinite(threshold) else None,
                    "blocks_per_row": keep}
        chosen = {n: scores[n] for n in self.unstructured}
        mk.update(self.model, baselines.unstructured_masks(chosen, current, budget))
        return {}


def _check_classes(classes: list[int]) -> list[int]:
    if not classes:
        raise UserError("the user's class list is empty: give at least one class id")
    if len(set(classes)) != len(classes):
        raise UserError(f"class list {classes} repeats a class")
    return list(classes)


def prune(
    model: nn.Module,
    train_data: Dataset,
    test_data: Dataset,
    classes: list[int],
    config: PruneConfig,
    seed: int = 0,
    runtime: Runtime | str | None = None,
) -> PruneResult:
    """Prune a copy of ``model`` for the user's ``classes`` (the input model is left unchanged).

    Args:
        model: a trained classifier over all classes.
        train_data: the user-class training images ``(image [C, H, W], class id)``; a seeded
            share (``config.recovery.val_share``) of each class is held out for validation, the
            rest feed the gradients and the fine-tuning (`crisp.finetune.Recovery`).
        test_data: user-class test images for the per-round metrics (reported, never used for a
            choice).
        classes: the user's class ids.
        config: the scheme and its settings.
        seed: seeds every random choice (data order, augmentation; ``torch.manual_seed`` too).
        runtime: where to compute: a `crisp.devices.Runtime`, a device name (``"cuda"``,
            ``"auto"``, ...) or None (the CPU). Masks, saliency and fine-tuning stay on it.
            Under ``torchrun`` (an initialised process group) the ranks split the data, their
            saliency sums are added, and every rank holds the same masks after every round
            (checked; the record's ``world_size`` says how many ranks ran).

    Returns:
        the pruned model and its masks (on the CPU) and the replayable record.
    """
    classes = _check_classes(classes)
    rt = as_runtime(runtime)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model)
    num_outputs = model.get_submodule(mk.classifier_name(model)).out_features
    bad = [c for c in classes if not 0 <= c < num_outputs]
    if bad:
        raise UserError(f"class id {bad[0]} out of range: allowed 0..{num_outputs - 1}")
    distributed.agree({"classes": classes, "seed": seed, "config": config.as_dict(),
                       "train_images": len(train_data), "test_images": len(test_data)})
    rt.place(model)
    label_map = head_label_map(classes, num_outputs) if config.head == "shrink" else None
    # the teacher is the dense model with its full head: the recovery copies it before shrinking
    recovery = Recovery(model, train_data, test_data, classes, config, generator, seed,
                        label_map, rt)
    if label_map is not None:
        shrink_head(model, classes)
    train_data = recovery.train  # fine-tuning and saliency never see the validation images
    record: dict[str, object] = {
        "format": "crisp-prune-record/2",
        "seed": seed,
        "classes": classes,
        "config": config.as_dict(),
        "target_density": config.target(len(classes)),
        "split": {"train": len(recovery.train), "val": len(recovery.val),
                  "test": len(test_data)},
        "world_size": distributed.world_size(),
        "runtime": rt.as_dict(),
    }
    record["before"] = recovery.start(model)
    if config.scheme in ("channel", "dense"):
        run = baselines.channel_prune if config.scheme == "channel" else baselines.dense_finetune
        model, rounds, extra = run(model, recovery, classes, config)
        record.update(extra)
        record["rounds"] = rounds
        record["warnings"] = recovery.warnings
        return PruneResult(_to_cpu(model), {}, record, label_map)
    plans = plan_layers(model, config.scheme, config.exclude_first, config.head_pattern)
    record["plan"] = {n: asdict(p) for n, p in plans.items()}
    pruner = _MaskPruner(model, config, plans)

    def gradients() -> None:
        gradient_pass(model, user_batches(train_data, config.batch_size_grad, generator,
                                          label_map, rt), pruner.meter, runtime=rt)

    clock = time.perf_counter()
    gradients()
    rt.sync()
    timing: dict[str, object] = {"gradient_pass": time.perf_counter() - clock, "rounds": []}
    if config.scheme in ("hybrid", "nm"):
        clock = time.perf_counter()
        pruner.apply_nm()
        rt.sync()
        timing["nm_selection"] = time.perf_counter() - clock
    start = mk.density(model)
    target = start if config.scheme == "nm" else config.target(len(classes))
    densities = schedule(target, start, config.step)
    if config.scheme in ("block", "unstructured") and len(densities) > 1:
        densities = densities[1:]  # no fine pattern: nothing to prune or tune at the start density
    record["schedule"] = densities
    rounds = []
    for t, goal in enumerate(densities):
        clock = time.perf_counter()
        decisions = {} if goal >= start and t == 0 else pruner.shrink_to(goal)
        digest = distributed.check_identical(mk.get_masks(model), f"masks after round {t}")
        pruner.meter.reset()
        metrics = recovery.round(model, t, f"{config.scheme} round {t}/{len(densities) - 1}",
                                 after_backward=pruner.meter.update)
        if pruner.meter.batches == 0:  # no fine-tuning: next round reuses a fresh gradient pass
            gradients()
        rounds.append({
            "round": t, "target_density": goal, "density": round(mk.density(model), 6),
            **metrics, **decisions, "layer_density": _layer_densities(model),
            "mask_sha256": digest,
        })
        timing["rounds"].append(time.perf_counter() - clock)  # evaluate() ends with a device sync
    final_masks = {n: m.cpu() for n, m in mk.get_masks(model).items()}
    mk.squash(model)
    record["rounds"] = rounds
    record["warnings"] = recovery.warnings
    record["seconds"] = timing  # wall clock: gradient pass, then each round (prune + tune + eval)
    return PruneResult(_to_cpu(model), final_masks, record, label_map)


def _to_cpu(model: nn.Module) -> nn.Module:
    """The model on the CPU in the default (contiguous) memory format, ready to save."""
    return model.to("cpu").to(memory_format=torch.contiguous_format)
