"""Output files: checked before the work, written atomically, stale temporary files removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crisp.errors import UserError
from crisp.io import check_output_dir, check_output_file, remove_stale_temps, write_atomic


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


needs_permissions = pytest.mark.skipif(
    os.geteuid() == 0, reason="root may write into a read-only folder (os.access says so)")


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_new_file_in_new_folders_and_an_existing_file_are_writable(tmp_path: Path) -> None:
    assert check_output_file(tmp_path / "a" / "b" / "t.csv", (".csv",)) == tmp_path / "a/b/t.csv"
    (tmp_path / "old.csv").write_text("x")
    assert check_output_file(str(tmp_path / "old.csv")) == tmp_path / "old.csv"
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert check_output_dir(tmp_path) == tmp_path
    assert not (tmp_path / "a").exists() and not (tmp_path / "new").exists()  # nothing made


@pytest.mark.parametrize(
    ("target", "check", "message"),
    [
        ("f/x.csv", check_output_file, "lies under {f}, which is a file"),
        ("f/a/b/x.csv", check_output_file, "lies under {f}, which is a file"),
        ("f/run", check_output_dir, "lies under {f}, which is a file"),
        ("f", check_output_dir, "output folder {f} is a file"),
        ("d", check_output_file, "output {d} is a directory"),
        ("d/x.txt", lambda p: check_output_file(p, (".csv", ".parquet")),
         "unknown extension '.txt': allowed .csv, .parquet"),
    ],
)
def test_an_output_that_cannot_be_written_is_one_line(tmp_path: Path, target: str, check,
                                                      message: str) -> None:
    (tmp_path / "f").write_text("a file")
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError) as err:
        check(tmp_path / target)
    text = str(err.value)
    assert message.format(f=tmp_path / "f", d=tmp_path / "d") in text
    assert str(tmp_path / target) in text and "\n" not in text


@needs_permissions
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for check, target in ((check_output_file, locked / "x.pt"),
                              (check_output_file, locked / "sub" / "x.pt"),
                              (check_output_dir, locked / "run"), (check_output_dir, locked)):
            with pytest.raises(UserError, match=f"folder {locked} is not writable"):
                check(target)
    finally:
        locked.chmod(0o755)


def _age(path: Path, seconds: float) -> Path:
    """Make an empty file ``path`` last modified ``seconds`` ago."""
    path.write_text("")
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    return path


def test_a_write_removes_stale_temps_of_its_path_only(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getpid()
    temps = {name: _age(tmp_path / name, 3600) for name in (
        f".out.csv.{dead}.abcdefgh.tmp",    # a killed write of out.csv: stale
        ".out.csv.k3_9zzzz.tmp",            # one from a writer that put no pid in the name: stale
        f".out.csv.{live}.abcdefgh.tmp",    # a live process writing out.csv right now: kept
        f".out.csv.1.{dead}.abcdefgh.tmp",  # another path, out.csv.1: kept
        f".out.csv.x.{dead}.abcdefgh.tmp",  # another path, out.csv.x: kept
        f".other.csv.{dead}.abcdefgh.tmp",  # another path: kept
        f".out_csv.{dead}.abcdefgh.tmp",    # another path, a dot's place differs: kept
        f".out.csv.{dead}.abcdefgh.tmp.x",  # not a temp name: kept
    )}
    (tmp_path / f".out.csv.{dead}.freshxyz.tmp").write_text("")  # just written, maybe from
    # another machine sharing the folder, whose pid means nothing here: kept until it is old
    write_atomic(tmp_path / "out.csv", lambda tmp: tmp.write_text("new"))
    assert (tmp_path / "out.csv").read_text() == "new"
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"out.csv", f".out.csv.{dead}.freshxyz.tmp", *list(temps)[2:]}
    assert remove_stale_temps(tmp_path / "out.csv", stale_after_s=0) == [
        tmp_path / f".out.csv.{dead}.freshxyz.tmp"]


def test_temps_of_live_writers_survive_a_cleaner_racing_them(tmp_path: Path) -> None:
    """Two processes write many files into one folder (as a sweep's workers write parts) while
    this one removes stale temps of the same paths with no age guard: no write fails."""
    code = ("import sys, time; from pathlib import Path; from crisp.io import write_atomic\n"
            "def slow(tmp):\n    tmp.write_text('x'); time.sleep(0.005)\n"
            "for i in range(40):\n"
            "    write_atomic(Path(sys.argv[1]) / f'part-{i % 8}.parquet', slow)\n")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                                cwd=Path(__file__).resolve().parent.parent) for _ in range(2)]
    while any(w.poll() is None for w in writers):
        for i in range(8):
            remove_stale_temps(tmp_path / f"part-{i}.parquet", stale_after_s=0)
    assert [w.returncode for w in writers] == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"part-{i}.parquet" for i in range(8)]


def test_a_reader_that_goes_away_ends_a_command_quietly() -> None:
    """``accel-sim layers ... | head``: the write that finds the pipe closed ends the command
    with the shell's SIGPIPE status and nothing on stderr, not a BrokenPipeError traceback."""
    code = ("from crisp.errors import exit_on_user_error\n"
            "@exit_on_user_error\n"
            "def main(argv=None):\n"
            "    for i in range(1_000_000):\n"  # far more than a pipe's buffer
            "        print(i)\n"
            "    return 0\n"
            "raise SystemExit(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"0\n"
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141 and err == b""
