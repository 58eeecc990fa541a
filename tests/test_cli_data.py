"""``crisp`` CLI with the new data options: IDX folders, --image-size, --train-per-class."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from crisp.cli import main


def _png_folder(root: Path, side: int = 40) -> Path:
    from PIL import Image

    for split, per in (("train", 3), ("val", 1)):
        for name, rgb in (("a", (250, 10, 10)), ("b", (10, 10, 250))):
            (root / split / name).mkdir(parents=True)
            for i in range(per):
                Image.new("RGB", (side, side + i), rgb).save(root / split / name / f"{i}.png")
    return root


def _idx_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 8), ("t10k", 4)):
        for kind, arr in (("images", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                          ("labels", (np.arange(n) % 2).astype(np.uint8))):
            head = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
            (root / f"{prefix}-{kind}-idx{arr.ndim}-ubyte.gz").write_bytes(
                gzip.compress(head + arr.tobytes()))
    return root


def _train(data: str, out: Path, *extra: str) -> dict:
    code = main(["train", "--model", "resnet_small", "--data", data, "--epochs", "1",
                 "--batch-size", "4", "--out", str(out), *extra])
    assert code == 0
    return json.loads(out.with_suffix(".json").read_text())


def test_image_folder_is_read_at_the_model_input_size(tmp_path: Path) -> None:
    folder = _png_folder(tmp_path / "pngs")
    record = _train(str(folder), tmp_path / "m.pt")
    assert record["image_size"] == 32  # resnet_small's input, not 224
    record = _train(str(folder), tmp_path / "m16.pt", "--image-size", "16")
    assert record["image_size"] == 16


def test_train_on_idx_folder_and_subset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _idx_folder(tmp_path / "mnist")
    record = _train(f"idx:{folder}", tmp_path / "m.pt", "--train-per-class", "2")
    assert record["image_size"] == 32 and record["train_per_class"] == 2
    assert record["data"] == f"idx:{folder}"
    code = main(["eval", "--model", "resnet_small", "--data", f"idx:{folder}", "--classes", "0,1",
                 "--checkpoint", str(tmp_path / "m.pt")])
    assert code == 0 and "classes [0, 1]" in capsys.readouterr().out


def test_missing_idx_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--data", f"idx:{tmp_path / 'no'}", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: IDX folder") and err.count("\n") == 1
