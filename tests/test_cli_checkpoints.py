"""Where ``crisp prune`` gets its dense model, and unreadable checkpoints as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crisp.cli import CHECKPOINTS, committed_checkpoint, main


def test_prune_on_embedded_data_starts_from_the_committed_checkpoint(tmp_path: Path,
                                                                     capsys) -> None:
    assert (CHECKPOINTS / "resnet_small_glyph100.pt").is_file()
    out = tmp_path / "run"
    assert main(["prune", "--classes", "2", "--n-per-class", "4", "--scheme", "dense",
                 "--epochs", "0", "--device", "cpu", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "no --checkpoint: starting from the committed" in said
    assert "resnet_small_glyph100.pt" in said
    record = json.loads((out / "record.json").read_text())
    assert record["checkpoint"].endswith("resnet_small_glyph100.pt")
    assert record["before"]["top1"] > 90  # the trained network, not a random one


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--data-seed", "1"], "trained on --data-seed 0, not 1"),
        (["--model", "vgg_small"], "no committed checkpoint of vgg_small on glyph100: give the "
         "dense model as --checkpoint PATH (it has no published weights)"),
        (["--model", "resnet18"], "no committed checkpoint of resnet18 on glyph100: give the "
         "dense model as --checkpoint PATH or --pretrained"),
    ],
)
def test_no_committed_checkpoint_that_fits_is_one_line(tmp_path: Path, capsys, flags: list[str],
                                                       message: str) -> None:
    assert main(["prune", "--classes", "2", "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_a_folder_of_data_never_picks_a_committed_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "glyph100").mkdir()
    assert committed_checkpoint("resnet_small", str(tmp_path / "glyph100"), 0) is None


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04not a zip", "random"])
def test_unreadable_checkpoint_is_one_line(tmp_path: Path, capsys, content: bytes | str) -> None:
    path = tmp_path / "bad.pt"
    if content == "random":
        content = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path.write_bytes(content)
    assert main(["eval", "--checkpoint", str(path), "--classes", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: checkpoint {path} is not a readable torch file (")
    assert "\n" not in err and len(err) < 300
