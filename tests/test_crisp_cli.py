"""The ``crisp`` CLI end to end on a tiny CIFAR-100-layout data set, and its errors."""

from __future__ import annotations

import json
import pickle
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from crisp import compressed
from crisp.cli import build_parser, main
from crisp.config import PruneConfig
from crisp.pattern_core import DEFAULT_BLOCK


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cifar-100-python folder with 5 classes (ids 0..4): 6 train and 3 test images each."""
    root = tmp_path_factory.mktemp("cifar") / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, per in (("train", 6), ("test", 3)):
        labels = np.repeat(np.arange(5), per)
        data = rng.integers(0, 256, (labels.size, 3 * 32 * 32), dtype=np.uint8)
        data[:, : 1024] = (labels[:, None] * 50).astype(np.uint8)  # a class-dependent red plane
        with open(root / split, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist()}, f)
    return root


@pytest.fixture(scope="module")
def checkpoint(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ck") / "dense.pt"
    assert main(["train", "--data", str(data_dir), "--epochs", "1", "--batch-size", "15",
                 "--out", str(out)]) == 0
    return out


def test_train_writes_a_small_fp16_state_dict_and_record(checkpoint: Path) -> None:
    state = torch.load(checkpoint, weights_only=True)
    assert state["fc.weight"].dtype == torch.float16
    record = json.loads(checkpoint.with_suffix(".json").read_text())
    assert record["seed"] == 0 and "top1" in record["test"]


@pytest.mark.parametrize(("scheme", "extra"), [("hybrid", []), ("channel", ["--head", "shrink"])])
def test_prune_then_eval(data_dir: Path, checkpoint: Path, tmp_path: Path, capsys, scheme: str,
                         extra: list[str]) -> None:
    run = tmp_path / "run"
    args = ["prune", "--data", str(data_dir), "--checkpoint", str(checkpoint), "--classes", "1,3",
            "--scheme", scheme, "--density", "0.3", "--step", "0.6", "--block", "16",
            "--batch-size", "12", "--seed", "1", "--out", str(run), *extra]
    assert main(args) == 0
    record = json.loads((run / "record.json").read_text())
    assert record["classes"] == [1, 3] and record["seed"] == 1
    assert record["config"]["scheme"] == scheme
    assert record["rounds"][-1]["density"] <= 0.31
    layers = compressed.read_layers(run / "pruned.safetensors")
    assert layers[0].name == "stem.0" and layers[-1].name == "fc"
    assert {la.scheme for la in layers} == ({"dense", "hybrid", "nm"} if scheme == "hybrid"
                                            else {"dense"})
    capsys.readouterr()
    assert main(["eval", "--data", str(data_dir), "--checkpoint", str(run / "model.pt")]) == 0
    out = capsys.readouterr().out
    assert "classes [1, 3]" in out and "top-1" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nm", "4:4"], "N=4 must satisfy"),
        (["--nm", "2:6"], "power of two"),
        (["--nm", "two"], "--nm 'two'"),
        (["--block", "0"], "block size 0"),
        (["--density", "1.5"], "density 1.5"),
        (["--density", "0"], "density 0.0"),
        (["--classes", "1,120"], "class id 120 out of range"),
        (["--classes", "0"], "k=0 classes"),
        (["--classes", ","], "empty"),
        (["--data", "/nonexistent/cifar"], "does not exist"),
        (["--checkpoint", "/nonexistent.pt"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(data_dir: Path, checkpoint: Path, tmp_path: Path, capsys,
                                         flags: list[str], message: str) -> None:
    base = {"--data": str(data_dir), "--checkpoint": str(checkpoint), "--classes": "2",
            "--out": str(tmp_path / "r")}
    base.update(zip(flags[::2], flags[1::2], strict=True))
    argv = ["prune", *(x for pair in base.items() for x in pair)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_empty_data_folder_is_a_user_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "is empty" in capsys.readouterr().err


def test_prune_needs_exactly_one_dense_model_source(data_dir: Path, checkpoint: Path,
                                                    tmp_path: Path, capsys) -> None:
    base = ["prune", "--data", str(data_dir), "--classes", "2", "--out", str(tmp_path / "r")]
    assert main(base) == 2
    assert "--checkpoint PATH or --pretrained" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(checkpoint), "--pretrained"]) == 2
    assert "one of them" in capsys.readouterr().err


def test_training_draws_no_progress_bar_when_stderr_is_no_terminal(data_dir: Path, tmp_path: Path,
                                                                   capsys) -> None:
    """A log redirected to a file (capsys is no terminal) holds no bar redraws."""
    out = tmp_path / "dense.pt"
    assert main(["train", "--data", str(data_dir), "--epochs", "1", "--batch-size", "15",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "it/s" not in err and "%|" not in err


def test_block_defaults_to_16() -> None:
    assert PruneConfig().block == DEFAULT_BLOCK == 16
    args = build_parser().parse_args(["prune", "--classes", "2", "--out", "r"])
    assert args.block == DEFAULT_BLOCK


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"crisp {metadata.version('crisp-sim')}\n"
