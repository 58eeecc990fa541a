"""The ``crisp`` CLI end to end on a tiny CIFAR-100-layout data set, and its errors."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from accel_sim.cli import main as sim_main
from crisp import cli as crisp_cli
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
    # the file is compared with the dense model (fp16), not with its own (shrunk) layers
    dense = torch.load(checkpoint, weights_only=True)
    dense_bytes = 2 * sum(w.numel() for k, w in dense.items() if k.endswith(".weight")
                          and w.dim() in (2, 4))
    sizes = record["compressed"]
    assert sizes["dense_model_bytes"] == dense_bytes
    assert (sizes["dense_bytes"] < dense_bytes) == (scheme == "channel")
    assert f"vs dense {dense_bytes}" in capsys.readouterr().out
    # the model, data and classes come from the file
    assert main(["eval", "--checkpoint", str(run / "model.pt")]) == 0
    out = capsys.readouterr().out
    assert "classes [1, 3]" in out and "top-1" in out


def test_eval_of_a_checkpoint_of_another_model_is_one_line(checkpoint: Path, data_dir: Path,
                                                           tmp_path: Path, capsys) -> None:
    flags = ["--data", str(data_dir), "--classes", "1,3"]
    assert main(["eval", "--model", "vit_small", "--checkpoint", str(checkpoint), *flags]) == 2
    err = capsys.readouterr().err  # crisp train's record beside it names the model
    assert err.count("\n") == 1 and "holds a resnet_small" in err
    bare = tmp_path / "bare.pt"  # no record: the state dict itself must fit
    bare.write_bytes(checkpoint.read_bytes())
    assert main(["eval", "--model", "vit_small", "--checkpoint", str(bare), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit ViTSmall" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nm", "4:4"], "N=4 must satisfy"),
        (["--nm", "2:6"], "power of two"),
        (["--nm", "two"], "--nm 'two'"),
        (["--block", "0"], "argument --block: '0': allowed an integer in 1..1024"),
        (["--density", "1.5"], "argument --density: '1.5': allowed a number in (0, 1]"),
        (["--density", "0"], "argument --density: '0': allowed a number in (0, 1]"),
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
    assert "--checkpoint PATH (it has no published weights)" in capsys.readouterr().err
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


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command started its work before checking --out")


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("file/dense.pt", "lies under {tmp}/file, which is a file"),
        ("dense.json", "unknown extension '.json': allowed .pt, .pth"),
        ("folder.pt", "output {tmp}/folder.pt is a directory"),
        ("taken.pt", "output {tmp}/taken.json is a directory"),  # the record's path
    ],
)
def test_train_refuses_an_unwritable_out_before_any_work(data_dir: Path, tmp_path: Path, capsys,
                                                         monkeypatch, out: str,
                                                         message: str) -> None:
    (tmp_path / "file").write_text("a file")
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "taken.json").mkdir()
    monkeypatch.setattr(crisp_cli, "_load_splits", _no_work)  # loading the data fails the test
    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(tmp=tmp_path) in err and "\n" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_train_refuses_a_read_only_folder_before_any_work(data_dir: Path, tmp_path: Path, capsys,
                                                         monkeypatch) -> None:
    monkeypatch.setattr(crisp_cli, "_load_splits", _no_work)
    tmp_path.chmod(0o555)
    try:
        assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "x.pt")]) == 2
    finally:
        tmp_path.chmod(0o755)
    assert f"folder {tmp_path} is not writable" in capsys.readouterr().err


def test_prune_refuses_an_out_that_is_a_file_before_any_work(data_dir: Path, checkpoint: Path,
                                                              tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    (tmp_path / "r").write_text("a file")
    monkeypatch.setattr(crisp_cli, "_dense_source", _no_work)
    argv = ["prune", "--data", str(data_dir), "--checkpoint", str(checkpoint), "--classes", "2"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    assert f"output folder {tmp_path / 'r'} is a file" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "r" / "run")]) == 2
    assert f"lies under {tmp_path / 'r'}, which is a file" in capsys.readouterr().err


def test_train_record_lists_the_state_dicts_hash_and_eval_checks_it(checkpoint: Path,
                                                                   tmp_path: Path, capsys) -> None:
    record = json.loads(checkpoint.with_suffix(".json").read_text())
    assert record["files"] == {"dense.pt": {
        "bytes": checkpoint.stat().st_size,
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}}
    copy = tmp_path / "dense.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, copy)  # another run's weights ...
    shutil.copy(checkpoint.with_suffix(".json"), copy.with_suffix(".json"))  # ... this record
    assert main(["eval", "--checkpoint", str(copy), "--classes", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{copy} does not match {copy.with_suffix('.json')}" in err and "\n" not in err
    assert "re-run crisp train" in err


class Killed(BaseException):
    """A run killed half-way (as by a signal)."""


def test_an_interrupted_prune_rerun_is_refused_by_every_reader(data_dir: Path, checkpoint: Path,
                                                               tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    run = tmp_path / "run"
    argv = ["prune", "--data", str(data_dir), "--checkpoint", str(checkpoint), "--classes", "1,3",
            "--density", "0.5", "--step", "0.5", "--block", "16", "--batch-size", "12",
            "--epochs", "0", "--out", str(run)]
    assert main([*argv, "--seed", "1"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert (manifest["format"], manifest["command"], manifest["seed"]) == ("crisp-run", "prune", 1)
    assert sorted(manifest["files"]) == ["model.pt", "pruned.safetensors", "record.json"]
    readers = [
        lambda: main(["eval", "--data", str(data_dir), "--checkpoint", str(run / "model.pt")]),
        lambda: sim_main(["run", str(run / "pruned.safetensors")]),
        lambda: sim_main(["layers", str(run / "pruned.safetensors")]),
    ]
    assert [read() for read in readers] == [0, 0, 0]

    def killed(*args: object, **kwargs: object) -> None:
        raise Killed
    monkeypatch.setattr(compressed, "save", killed)  # the re-run dies after writing model.pt
    with pytest.raises(Killed):
        main([*argv, "--seed", "2"])
    assert torch.load(run / "model.pt", weights_only=True)["state_dict"]  # the new run's
    capsys.readouterr()
    for read in readers:
        assert read() == 2
        err = capsys.readouterr().err.strip()
        assert "record.json but no manifest.json" in err
        assert err.endswith(f"re-run crisp prune --out {run}") and "\n" not in err

    monkeypatch.undo()
    assert main([*argv, "--seed", "2"]) == 0  # a complete re-run makes the folder readable
    assert [read() for read in readers] == [0, 0, 0]
