"""Data-parallel pruning on the CPU: 2 processes, gloo, identical masks on both ranks.

One spawned pair runs the Python API (masks of each rank saved for comparison, a fine-tuned run
in DistributedDataParallel, a gradient-only run comparable with one process, and ranks given
different classes); one ``torchrun`` pair runs ``crisp prune`` end to end.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors import safe_open
from torch.utils.data import TensorDataset

from crisp import distributed
from crisp.config import PruneConfig
from crisp.errors import UserError
from crisp.models import ResNetSmall
from crisp.pruner import prune
from crisp.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def _task() -> tuple[ResNetSmall, TensorDataset, TensorDataset]:
    """A narrow resnet_small over 4 classes; 16 user-class training images (8 per class)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ResNetSmall(num_classes=4, widths=(8, 16, 16, 32))
    labels = torch.tensor([1, 2] * 8)
    images = torch.randn(16, 3, 16, 16, generator=gen)
    images[:, 0] += labels[:, None, None].float()
    return model, TensorDataset(images, labels), TensorDataset(images[:6], labels[:6])


def _config(epochs: int, grad_batch: int) -> PruneConfig:
    return PruneConfig(scheme="hybrid", density=0.3, step=0.5, block=8, epochs=epochs,
                       train=TrainConfig(batch_size=4), batch_size_grad=grad_batch)


def _runs() -> dict[str, tuple[PruneConfig, list[int]]]:
    return {"tuned": (_config(1, 4), [1, 2]), "gradients": (_config(0, 1), [1, 2])}


def _worker(rank: int, folder: str) -> None:
    torch.set_num_threads(1)  # two ranks share the machine's cores
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=2)
    try:
        model, train, test = _task()
        out = {}
        for name, (config, classes) in _runs().items():
            result = prune(model, train, test, classes, config, seed=7)
            out[name] = (result.masks, result.record)
        try:
            prune(model, train, test, [1, 2 + rank], _config(0, 4), seed=7)
            out["disagree"] = None
        except UserError as err:
            out["disagree"] = str(err)
        with open(Path(folder) / f"rank{rank}.pkl", "wb") as f:
            pickle.dump(out, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(folder),), nprocs=2, join=True)
    return [pickle.loads((folder / f"rank{r}.pkl").read_bytes()) for r in range(2)]


def test_both_ranks_hold_identical_masks_after_every_round(ranks) -> None:
    for run in _runs():
        (masks0, record0), (masks1, record1) = ranks[0][run], ranks[1][run]
        assert masks0 and masks0.keys() == masks1.keys()
        for name in masks0:
            assert torch.equal(masks0[name], masks1[name]), (run, name)
        assert record0["world_size"] == record1["world_size"] == 2
        digests = [[r["mask_sha256"] for r in rec["rounds"]] for rec in (record0, record1)]
        assert digests[0] == digests[1] and len(digests[0]) == 2
        # same metrics on both ranks (evaluation adds the shards); JSON: train_loss may be nan
        assert json.dumps(record0["rounds"]) == json.dumps(record1["rounds"])


@pytest.fixture
def one_thread():
    """Tiny per-image passes run fastest on one thread (no oversubscription on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_gradient_only_run_matches_one_process(ranks, one_thread) -> None:
    """Per-image gradients (batch 1, BatchNorm in eval mode), no fine-tuning: the two ranks'
    sums add up to the one-process sum (up to float rounding), so the masks agree."""
    model, train, test = _task()
    config, classes = _runs()["gradients"]
    single = prune(model, train, test, classes, config, seed=7)
    for name, mask in single.masks.items():
        assert torch.equal(mask, ranks[0]["gradients"][0][name]), name
    assert single.record["world_size"] == 1
    assert single.record["rounds"][-1]["top1"] == ranks[0]["gradients"][1]["rounds"][-1]["top1"]


def test_ranks_given_different_classes_refuse_before_training(ranks) -> None:
    for rank in (0, 1):
        message = ranks[rank]["disagree"]
        assert message is not None and "ranks disagree on classes" in message


def _cifar(root: Path) -> Path:
    """A cifar-100-python folder with 4 classes, 8 train and 4 test images each."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, per in (("train", 8), ("test", 4)):
        labels = np.repeat(np.arange(4), per)
        data = rng.integers(0, 256, (labels.size, 3 * 32 * 32), dtype=np.uint8)
        data[:, :1024] = (labels[:, None] * 60).astype(np.uint8)
        with open(folder / split, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist()}, f)
    return folder


def _layout(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    with safe_open(str(path), "pt") as f:
        names = list(f.keys())  # a safetensors handle is not iterable
        return {k: (str(f.get_tensor(k).dtype), tuple(f.get_tensor(k).shape)) for k in names}


def test_torchrun_train_then_prune_writes_the_single_process_format(tmp_path: Path) -> None:
    data = _cifar(tmp_path)
    dense = tmp_path / "dense.pt"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc-per-node", "2", "-m", "crisp.cli"]
    trained = subprocess.run([*launch, "train", "--data", str(data), "--epochs", "1",
                              "--batch-size", "8", "--device", "cpu", "--out", str(dense)],
                             env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads(dense.with_suffix(".json").read_text())["world_size"] == 2
    assert torch.load(dense, weights_only=True)["fc.weight"].shape == (100, 128)
    flags = ["prune", "--data", str(data), "--checkpoint", str(dense), "--classes", "1,2",
             "--density", "0.3", "--step", "0.5", "--block", "16", "--batch-size", "4",
             "--device", "cpu", "--seed", "3"]
    done = subprocess.run([*launch, *flags, "--out", str(tmp_path / "ddp")], env=env,
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone prints and writes
    single = subprocess.run([sys.executable, "-m", "crisp.cli", *flags, "--out",
                             str(tmp_path / "one")], env=env, capture_output=True, text=True,
                            timeout=240, cwd=ROOT)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp_record = json.loads((tmp_path / "ddp" / "record.json").read_text())
    one_record = json.loads((tmp_path / "one" / "record.json").read_text())
    assert ddp_record["world_size"] == 2 and one_record["world_size"] == 1
    assert ddp_record["classes"] == one_record["classes"] == [1, 2]
    assert ddp_record["schedule"] == one_record["schedule"]
    assert _layout(tmp_path / "ddp" / "pruned.safetensors") == _layout(
        tmp_path / "one" / "pruned.safetensors")
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "manifest.json", "model.pt", "pruned.safetensors", "record.json"]  # no temporary files
    assert distributed.world_size() == 1  # the test process itself never joined a group
