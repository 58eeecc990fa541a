"""Output files: checked before the work, written so that a failed run never leaves half a file.

- `check_output_file` and `check_output_dir`: the command lines call them on ``--out`` before any
  work, so a target that cannot be written is a one-line `crisp.errors.UserError` at once rather
  than a traceback after the work.
- `write_atomic`: write to a temporary file beside the target, then rename it onto the target.
  It first removes the stale temporary files a killed write of the same target left behind
  (`remove_stale_temps`).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from crisp.errors import UserError

#: A temporary file untouched for this many seconds, whose writer is no live process of this
#: machine, is stale (see `remove_stale_temps`).
STALE_AFTER_S = 60.0


def check_output_file(path: str | Path, suffixes: Iterable[str] | None = None) -> Path:
    """``path`` as a `Path` if a file can be written there.

    Checks that its suffix is one of ``suffixes`` (when given), that it is no existing
    directory, and that it can be created: its nearest existing ancestor folder is a directory
    this process may write into (``os.access`` semantics: root may write anywhere), so no part
    of the path is an existing file.

    Raises:
        UserError: one line naming ``path`` and what is wrong.
    """
    path = Path(path)
    if suffixes is not None and path.suffix not in suffixes:
        raise UserError(f"output {path}: unknown extension {path.suffix!r}: allowed "
                        + ", ".join(suffixes))
    if path.is_dir():
        raise UserError(f"output {path} is a directory: allowed a file path")
    _check_creatable(path, path.parent)
    return path


def check_output_dir(path: str | Path) -> Path:
    """``path`` as a `Path` if an output folder can be made there (or is there, writable).

    Raises:
        UserError: ``path`` is an existing file, lies under a file, or its nearest existing
            ancestor folder is not writable; one line naming it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output folder {path} is a file: allowed a folder (existing or new)")
    _check_creatable(path, path)
    return path


def _check_creatable(path: Path, folder: Path) -> None:
    """Refuse ``path`` unless ``folder`` exists as a writable directory or can be made."""
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"output {path} lies under {existing}, which is a file: allowed a path "
                        "in a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output {path}: folder {existing} is not writable")


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    The rename is atomic on one file system: readers see the old file or the complete new one.
    If ``write`` raises, the temporary file is removed and ``path`` is untouched. The temporary
    file is ``.NAME.PID.XXXXXXXX.tmp`` (``PID``: this process); stale ones of the same ``path``
    are removed first (`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temps(path: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary files `write_atomic` left beside ``path`` when a write was killed.

    A temporary file of ``path`` is ``.NAME.PID.XXXXXXXX.tmp`` (or ``.NAME.XXXXXXXX.tmp``, with
    no ``PID``). It is stale, and removed, when both hold:

    - its ``PID`` is no live process on this machine (or the name has none), so a write in
      progress here is never touched (a reused ``PID`` only keeps a stale file a while longer);
    - it has not been modified for ``stale_after_s`` seconds, which protects a live writer on
      another machine sharing the folder (its ``PID`` means nothing here) while it writes.

    Only names of ``path`` match: concurrent writes of other files in the same folder (a sweep's
    ``parts/part-*.parquet``) are never touched. Two processes removing the same stale file is
    harmless, and a file this process may not remove (another user's) is left: cleaning is best
    effort and never fails the write.

    Returns:
        The files removed.
    """
    # ``tempfile.mkstemp`` adds eight characters of [a-z0-9_] between prefix and suffix.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp")
    removed = []
    now = time.time()
    try:
        with os.scandir(path.parent) as entries:
            names = [entry.name for entry in entries]
    except OSError:  # cleaning is best effort: it never fails a write
        return []
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or (match[1] is not None and _alive(int(match[1]))):
            continue
        candidate = path.parent / name
        try:
            if now - candidate.stat().st_mtime < stale_after_s:
                continue
            candidate.unlink()
        except OSError:  # another process removed it first, or it is not ours to remove
            continue
        removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):  # no such pid can exist
        return False
    return True


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a user's input file ``path``.

    Raises:
        UserError: ``<what> <path> does not exist`` (or is not a file), or is not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist or is not a file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {err.start}): a text file is "
                        "expected") from None
