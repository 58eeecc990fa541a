"""The recovery of a pruned model: distillation, BatchNorm recalibration, balanced batches, the
validation split, the warning, and the collapse it fixes on the demo's small setting."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import Subset, TensorDataset

from crisp.cli import CHECKPOINTS, in_memory
from crisp.cli import main as crisp_main
from crisp.errors import UserError
from crisp.recovery import (
    BalancedSampler,
    Distiller,
    RecoveryConfig,
    balanced_subset,
    check_round,
    labels_of,
    recalibrate_batchnorm,
    split_validation,
)


def _labelled(counts: list[int]) -> TensorDataset:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return TensorDataset(torch.randn(len(labels), 3, 4, 4, generator=torch.Generator()
                                     .manual_seed(0)), labels)


@pytest.mark.parametrize("kw, message", [
    ({"temperature": 0.0}, "distillation temperature = 0.0: allowed a number in (0, 1000]"),
    ({"temperature": -1}, "distillation temperature = -1: allowed a number in (0, 1000]"),
    ({"distill_weight": 1.01}, "distillation weight = 1.01: allowed a number in [0, 1]"),
    ({"distill_weight": -0.1}, "distillation weight = -0.1: allowed a number in [0, 1]"),
    ({"val_share": 0.0}, "validation share = 0.0: allowed a number in (0, 0.5]"),
    ({"val_share": 0.51}, "validation share = 0.51: allowed a number in (0, 0.5]"),
    ({"min_steps": 0}, "minimum steps per epoch 0 must be an integer >= 1"),
    ({"temperature": math.inf}, "distillation temperature = inf: allowed a number in (0, 1000]"),
    ({"warn_margin": math.nan}, "warning margin (points) = nan: allowed a number in [0, 100]"),
    ({"recalibration_images": 0}, "recalibration images 0 must be an integer >= 1"),
])
def test_bad_recovery_settings_raise_one_line(kw: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        RecoveryConfig(**kw)
    assert RecoveryConfig(distill_weight=0, val_share=0.5).distill_weight == 0  # edges allowed


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "0"], "error: crisp prune: argument --temperature: '0': allowed a number"),
    (["--distill-weight", "2"], "error: crisp prune: argument --distill-weight: '2': allowed"),
    (["--val-share", "0"], "error: crisp prune: argument --val-share: '0': allowed a number in"),
    (["--n-per-class", "1"], "error: validation share 0.2 leaves class"),
    (["--lr", "nan"], "error: crisp prune: argument --lr: 'nan': allowed a number in (0, 1e+06]"),
    (["--lr", "inf"], "error: crisp prune: argument --lr: 'inf': allowed a number in (0, 1e+06]"),
])
def test_prune_cli_rejects_bad_recovery_with_exit_2(flags: list[str], message: str, capsys,
                                                    tmp_path) -> None:
    status = crisp_main(["prune", "--classes", "3", "--scheme", "dense", "--epochs", "0",
                         "--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith(message)
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_validation_split_is_stratified_seeded_and_disjoint() -> None:
    data = _labelled([10, 7, 2])
    train, val = split_validation(data, 0.2, seed=3)
    train_ids, val_ids = set(train.indices), set(val.indices)
    assert not train_ids & val_ids and train_ids | val_ids == set(range(19))
    held = torch.bincount(labels_of(val), minlength=3).tolist()
    assert held == [2, math.ceil(0.2 * 7), 1]  # ceil(share * n): at least one a class
    assert torch.bincount(labels_of(train), minlength=3).min() >= 1
    again, _ = split_validation(data, 0.2, seed=3)
    other, _ = split_validation(data, 0.2, seed=4)
    assert again.indices == train.indices and other.indices != train.indices
    with pytest.raises(UserError, match="leaves class 2 without training images"):
        split_validation(_labelled([5, 5, 1]), 0.2, seed=0)


def test_labels_of_reads_every_container() -> None:
    data = _labelled([2, 3])
    assert labels_of(data).tolist() == [0, 0, 1, 1, 1]
    assert labels_of(Subset(data, [4, 0])).tolist() == [1, 0]

    class Plain(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(1), 7 - i

    assert labels_of(Plain()).tolist() == [7, 6]


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=6), batch=st.integers(1, 32),
       seed=st.integers(0, 2**16), world=st.integers(1, 3))
def test_balanced_batches_hold_every_class_in_proportion(counts: list[int], batch: int,
                                                         seed: int, world: int) -> None:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    total, classes = len(labels), len(counts)
    shares = [list(BalancedSampler(labels, torch.Generator().manual_seed(seed), r, world))
              for r in range(world)]
    assert {len(s) for s in shares} == {math.ceil(total / world)}
    assert set().union(*map(set, shares)) == set(range(total))  # padding only repeats
    order = list(BalancedSampler(labels, torch.Generator().manual_seed(seed)))
    assert sorted(order) == list(range(total))  # one process: a permutation
    seen = torch.zeros(classes)
    for length, index in enumerate(order, start=1):  # every prefix: a shuffle drifts far more
        seen[labels[index]] += 1
        for c, n in enumerate(counts):
            assert abs(float(seen[c]) - length * n / total) < 1 + classes * n / total
    for start in range(0, total, batch):  # so every batch (a difference of two prefixes)
        window = labels[order[start:start + batch]]
        for c, n in enumerate(counts):
            expected = len(window) * n / total
            assert abs(int((window == c).sum()) - expected) < 2 + 2 * classes * n / total


def test_recalibration_reads_a_balanced_subset_in_data_order() -> None:
    data = _labelled([300, 100, 200])
    small = balanced_subset(data, 600, seed=0)
    assert small is data  # no larger than the cap: all of it, as it is
    part = balanced_subset(data, 60, seed=0)
    assert part.indices == sorted(part.indices) and len(part.indices) == 60
    assert torch.bincount(labels_of(part)).tolist() == [30, 10, 20]
    assert balanced_subset(data, 60, seed=0).indices == part.indices
    assert balanced_subset(data, 60, seed=1).indices != part.indices


def test_balanced_order_is_seeded() -> None:
    labels = torch.arange(30) % 3
    first = list(BalancedSampler(labels, torch.Generator().manual_seed(1)))
    assert first == list(BalancedSampler(labels, torch.Generator().manual_seed(1)))
    assert first != list(BalancedSampler(labels, torch.Generator().manual_seed(2)))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))


def test_distiller_mixes_cross_entropy_and_kl_and_keeps_the_teacher_frozen() -> None:
    teacher = _net()
    images = torch.randn(6, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    student = _net()
    logits = student(images)
    assert Distiller(teacher, 4.0, 0.0).loss(logits, images, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels).item())
    same = Distiller(student, 4.0, 1.0)  # a student equal to its teacher: no soft loss
    assert same.loss(student.eval()(images), images, labels).item() == pytest.approx(0, abs=1e-6)
    student.train()
    d = Distiller(teacher, 2.0, 0.5)
    with torch.no_grad():
        teacher[5].bias += 5.0  # the distiller holds a copy: later changes do not reach it
    t = d.teacher.eval()(images) / 2.0
    s = student(images)
    expected = 0.5 * F.cross_entropy(s, labels) + 0.5 * 4 * (
        F.softmax(t, 1) * (F.log_softmax(t, 1) - F.log_softmax(s / 2.0, 1))).sum(1).mean()
    loss = d.loss(s, images, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in d.teacher.parameters())
    assert not d.teacher.training and all(not p.requires_grad for p in d.teacher.parameters())
    shrunk = Distiller(teacher, 1.0, 1.0, index=torch.tensor([3, 1]))
    two = shrunk.teacher(images)[:, [3, 1]]
    assert shrunk.loss(two, images, labels % 2).item() == pytest.approx(0, abs=1e-6)


def test_recalibration_sets_the_statistics_of_the_data_and_nothing_else() -> None:
    net = _net()
    bn = net[1]
    bn.running_mean.fill_(7.0)
    bn.running_var.fill_(9.0)
    images = torch.randn(40, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    data = TensorDataset(images, torch.zeros(40, dtype=torch.long))
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    net.eval()
    assert recalibrate_batchnorm(net, data, batch_size=40) == 1
    act = net[0](images)
    assert torch.allclose(bn.running_mean, act.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, act.var(dim=(0, 2, 3), unbiased=True), atol=1e-4)
    assert not net.training and bn.momentum == 0.1  # mode and momentum restored
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in weights.items())
    assert recalibrate_batchnorm(nn.Linear(2, 2), data) == 0


def test_a_round_ends_with_statistics_recalibrated_on_the_fine_tuning_images() -> None:
    from crisp.finetune import Recovery
    from crisp.pruner import PruneConfig
    from crisp.train import TrainConfig

    net = _net()
    data = _labelled([12, 12, 12, 12, 12])
    config = PruneConfig(scheme="dense", epochs=2, train=TrainConfig(lr=0.05, batch_size=8))
    recovery = Recovery(net, data, data, [0, 1, 2, 3, 4], config, torch.Generator()
                        .manual_seed(0), seed=0)
    metrics = recovery.round(net, 0, "dense")
    assert metrics["batch_size"] == 6  # 45 fine-tuning images, at least 8 steps an epoch
    assert len(recovery.train) == 45 and len(recovery.val) == 15  # ceil(0.2 * 12) a class
    kept = [t.clone() for t in (net[1].running_mean, net[1].running_var)]
    recalibrate_batchnorm(net, recovery.train, batch_size=config.train.batch_size)
    assert torch.equal(kept[0], net[1].running_mean) and torch.equal(kept[1], net[1].running_var)


def test_only_pruned_models_are_distilled_and_recalibrated() -> None:
    from crisp.pruner import PruneConfig, prune
    from crisp.train import TrainConfig

    data = _labelled([10, 10, 10, 10, 10])
    for scheme, pruned in (("dense", False), ("unstructured", True)):
        config = PruneConfig(scheme=scheme, density=0.5, step=0.5, block=4,
                             exclude_first=False, train=TrainConfig(batch_size=8))
        rounds = prune(_net(), data, data, [0, 1, 2, 3, 4], config).record["rounds"]
        assert {(r["distilled"], r["recalibrated"]) for r in rounds} == {(pruned, pruned)}
    config = PruneConfig(scheme="unstructured", density=0.5, step=0.5, block=4,
                         exclude_first=False,
                         recovery=RecoveryConfig(distill=False, recalibrate=False))
    rounds = prune(_net(), data, data, [0, 1, 2, 3, 4], config).record["rounds"]
    assert {(r["distilled"], r["recalibrated"]) for r in rounds} == {(False, False)}


def test_check_round_reports_each_failure_with_its_numbers() -> None:
    assert check_round(1, 0.5, 0.4, 90.0, 88.0, 5.0, predicted=3, classes=3) is None
    assert check_round(1, 0.5, 0.52, 90.0, 88.0, 5.0, predicted=3, classes=3) is None  # noise
    assert "0.500 -> 0.530" in check_round(1, 0.5, 0.53, 90.0, 88.0, 5.0, predicted=3, classes=3)
    # near zero a relative rise is noise: 0.0060 -> 0.0064 is 7 % but 0.0004 nats
    assert check_round(1, 0.006, 0.0064, 100.0, 100.0, 5.0, predicted=3, classes=3) is None
    assert "0.006 -> 0.020" in check_round(1, 0.006, 0.02, 100.0, 100.0, 5.0, predicted=3,
                                           classes=3)
    text = check_round(2, 0.5, 0.9, 90.0, 50.0, 5.0, predicted=1, classes=3)
    assert text.startswith("round 2: recovery failed:")
    assert "validation loss 0.500 -> 0.900" in text and "90.0% -> 50.0%" in text
    assert "single class" in text and "\n" not in text
    assert check_round(0, 0.5, 0.4, 90.0, 100.0, 5.0, predicted=1, classes=1) is None


# ------------------------------------------------------------------------------------------------
# The collapse on the demo's small setting, and its fix
# ------------------------------------------------------------------------------------------------

_BEFORE = RecoveryConfig(distill=False, recalibrate=False, balanced=False, min_steps=1)
"""The fine-tuning as it was before any recovery (plain shuffled batches of 64, no teacher, stale
BatchNorm statistics); the validation split is the only difference."""


@pytest.fixture(scope="module")
def small_setting():
    """The glyph100 demo network and 3 user classes, 32 training images a class (seed 2)."""
    from crisp.data import load_dataset, user_subset
    from crisp.models import build_model

    train, test = load_dataset("glyph100", "train"), load_dataset("glyph100", "test")
    user_train, ids = user_subset(train, 3, 32, 2)
    user_test, _ = user_subset(test, ids, None, 2)
    model = build_model("resnet_small", checkpoint=str(CHECKPOINTS / "resnet_small_glyph100.pt"))
    return model, in_memory(user_train), in_memory(user_test), ids


@pytest.mark.parametrize("recovery, collapses", [(_BEFORE, True), (RecoveryConfig(), False)])
def test_demo_small_setting_collapses_without_recovery_and_not_with_it(
        small_setting, recovery: RecoveryConfig, collapses: bool, capsys) -> None:
    from crisp.pruner import PruneConfig, prune
    from crisp.train import TrainConfig

    model, user_train, user_test, ids = small_setting
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the sums of a collapse depend on the thread count
    try:
        result = prune(model, user_train, user_test, ids,
                       PruneConfig(scheme="hybrid", density=0.25, step=0.25, epochs=1,
                                   train=TrainConfig(batch_size=64), recovery=recovery), seed=2)
    finally:
        torch.set_num_threads(threads)
    assert result.record["before"]["predicted"] == 3  # the dense model does not collapse
    final = result.final
    warned = capsys.readouterr().err
    if collapses:
        assert final["predicted"] == 1 and final["val_predicted"] == 1
        assert "single class" in warned and result.record["warnings"]
    else:
        assert final["predicted"] >= 3 and final["top1"] > 80
        assert result.record["warnings"] == [] and warned == ""


def test_a_diverging_fine_tuning_stops_with_one_line_naming_the_step() -> None:
    from crisp.train import TrainConfig, train_epochs

    images, labels = _labelled([8, 8]).tensors
    data = TensorDataset(images * 1e18, labels)  # steps past float32: non-finite loss or weights
    with pytest.raises(UserError, match=r"^x round 1/2: (the loss is (nan|inf) at step \d+ of 4|"
                       r"weight \S+ is not finite after \d+ steps): "
                       r"training diverged; lower the learning rate \(1e\+06\)$"):
        train_epochs(_net(), data, TrainConfig(epochs=1, lr=1e6, batch_size=4),
                     torch.Generator().manual_seed(0), desc="x round 1/2")
    net = _net()
    with torch.no_grad():
        net[5].weight[0, 0] = math.nan  # a weight gone bad: the loss is nan at the first step
    with pytest.raises(UserError, match="at step 1 of 4"):
        train_epochs(net, data, TrainConfig(epochs=1, batch_size=4),
                     torch.Generator().manual_seed(0), desc="x")


def test_a_weight_gone_bad_in_the_last_step_is_caught_before_anything_is_written() -> None:
    from crisp.train import TrainConfig, train_epochs

    net, calls = _net(), []

    def poison_last_step() -> None:  # a gradient of inf in the last of 4 steps
        calls.append(1)
        if len(calls) == 4:
            net[5].weight.grad.fill_(math.inf)

    with pytest.raises(UserError, match=r"^x: weight 5\.weight is not finite after 4 steps"):
        train_epochs(net, _labelled([8, 8]), TrainConfig(epochs=1, batch_size=4),
                     torch.Generator().manual_seed(0), after_backward=poison_last_step, desc="x")
