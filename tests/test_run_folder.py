"""Run folders written as a set: the manifest, written last, and the readers' checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crisp import run_folder
from crisp.errors import UserError
from crisp.run_folder import MANIFEST, RUN_FILES, begin, check_file, check_run, describe, seal


def _write_run(folder: Path, tag: str) -> Path:
    """A complete run folder whose files hold ``tag`` (as ``crisp prune`` writes one)."""
    begin(folder)
    for name in RUN_FILES:
        (folder / name).write_text(f"{name} of run {tag}")
    seal(folder, {"command": "prune", "seed": 0})
    return folder


def _refused(path: Path, message: str) -> str:
    with pytest.raises(UserError) as err:
        check_file(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text
    return text


def test_a_complete_run_passes_and_its_manifest_lists_every_file(tmp_path: Path) -> None:
    folder = _write_run(tmp_path / "run", "a")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] == "crisp-run" and manifest["version"] == 1
    assert manifest["command"] == "prune" and sorted(manifest["files"]) == sorted(RUN_FILES)
    assert manifest["files"]["record.json"]["bytes"] == len("record.json of run a")
    assert check_run(folder) == folder
    for name in RUN_FILES:
        check_file(folder / name)
    (folder / "simulation.csv").write_text("x\n")  # another command's file beside the run
    check_file(folder / "simulation.csv")


def test_an_interrupted_rerun_is_refused_for_every_file(tmp_path: Path) -> None:
    """A re-run killed after its first file: the old manifest is gone, old files remain."""
    folder = _write_run(tmp_path / "run", "a")
    begin(folder)
    (folder / "model.pt").write_text("model.pt of run b")
    for name in RUN_FILES:
        _refused(folder / name, "but no manifest.json")
    text = _refused(folder / "record.json", "holds model.pt, pruned.safetensors but no")
    assert text.endswith(f"re-run crisp prune --out {folder}")
    with pytest.raises(UserError, match=r"is no complete run \(no manifest\.json\)"):
        check_run(folder)


def test_a_file_of_another_run_beside_a_manifest_is_refused(tmp_path: Path) -> None:
    folder = _write_run(tmp_path / "run", "a")
    (folder / "pruned.safetensors").write_text("pruned.safetensors of run b")
    _refused(folder / "pruned.safetensors", "does not match")
    (folder / "pruned.safetensors").write_text("pruned.safetensors of run a")
    check_file(folder / "pruned.safetensors")
    (folder / "record.json").write_text("record.json of run x")  # same size, other bytes
    text = _refused(folder / "record.json", f"does not match {folder / MANIFEST}")
    assert "holds files of different runs" in text
    with pytest.raises(UserError, match="does not match"):
        check_run(folder)


def test_a_run_file_missing_from_the_manifest_is_refused(tmp_path: Path) -> None:
    folder = _write_run(tmp_path / "run", "a")
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"]["record.json"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    _refused(folder / "record.json", "is not listed in")
    (folder / "pruned.safetensors").unlink()
    with pytest.raises(UserError, match=r"no pruned\.safetensors\)"):
        check_run(folder)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_unreadable_manifest_is_one_line(tmp_path: Path, text: str) -> None:
    folder = _write_run(tmp_path / "run", "a")
    (folder / MANIFEST).write_text(text)
    with pytest.raises(UserError, match="is no readable manifest") as err:
        check_file(folder / "model.pt")
    assert "\n" not in str(err.value)


def test_standalone_files_are_read_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "pruned.safetensors").write_text("a file on its own")
    (tmp_path / "other.safetensors").write_text("and another")
    (tmp_path / "net.json").write_text("not json")  # a .json beside that is no record of ours
    (tmp_path / "net.pt").write_text("x")
    for name in ("pruned.safetensors", "other.safetensors", "net.pt"):
        check_file(tmp_path / name)
    check_file(None)
    check_file(tmp_path / "missing.pt")  # the reader reports a missing file its own way


def test_a_state_dict_is_checked_against_the_record_beside_it(tmp_path: Path) -> None:
    """``crisp train``'s pair: X.json lists X.pt; a committed record without ``files`` passes."""
    weights, record = tmp_path / "dense.pt", tmp_path / "dense.json"
    weights.write_text("weights of run a")
    record.write_text(json.dumps({"command": "train", "files": describe(tmp_path, ["dense.pt"])}))
    check_file(weights)
    weights.write_text("weights of run b")
    assert "re-run crisp train" in _refused(weights, f"does not match {record}")
    record.write_text(json.dumps({"command": "train", "data_seed": 0}))
    check_file(weights)


def test_begin_removes_the_manifest_and_makes_the_folder(tmp_path: Path) -> None:
    folder = _write_run(tmp_path / "run", "a")
    begin(folder)
    assert not (folder / MANIFEST).exists() and (folder / "model.pt").exists()
    begin(tmp_path / "new" / "run")
    assert (tmp_path / "new" / "run").is_dir()


def test_check_writable_refuses_a_run_file_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "run" / "record.json").mkdir(parents=True)
    with pytest.raises(UserError, match=r"record\.json is a directory"):
        run_folder.check_writable(tmp_path / "run")
    assert run_folder.check_writable(tmp_path / "new") == tmp_path / "new"
