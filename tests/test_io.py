"""Atomic output: a failed write never leaves a half-written file in place of a good one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crisp.io import write_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("good\n")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == "good\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_new_file_gets_the_umask_permissions_and_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.txt"
    write_atomic(path, lambda tmp: tmp.write_text("x"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "x"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
