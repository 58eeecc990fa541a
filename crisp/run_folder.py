"""Files written as a set: a manifest, written last, lists them; readers check a file against it.

``crisp prune --out DIR`` writes `RUN_FILES` into ``DIR`` and then ``DIR/manifest.json``::

    {"format": "crisp-run", "version": 1, "command": "prune", "seed": 0,
     "files": {"model.pt": {"bytes": 123, "sha256": "..."}, ...}}

The writer removes an existing manifest first (`begin`), writes every file atomically
(`crisp.io.write_atomic`), and writes the manifest after the last one (`seal`). So a folder is a
complete run exactly when its manifest is present and every file matches its size and SHA-256;
a re-run killed half-way leaves no manifest, and a file copied in from another run later does
not match it.
``crisp train --out X.pt`` applies the same idea to its pair: ``X.json``, written after
``X.pt``, lists ``X.pt`` under the same ``files`` key. With one data file the hash alone tells an
old record from a new file, so the old ``X.json`` is not removed first.

A manifest rather than writing into a temporary sibling folder renamed into place: a folder
cannot be renamed onto a non-empty one atomically, and a run folder also holds files other
commands add (the demo's ``simulation.csv``), which a swap of folders would drop.

`check_file` is what every reader of one of a run's files calls before reading it:

- a file the folder's manifest lists, or named like a run file (`RUN_FILES`) beside a manifest,
  must match its entry;
- a run file in a folder without a manifest but holding another run file is refused (an
  interrupted run, or files of different runs);
- anything else is a standalone file, read as it is: a ``.safetensors`` or ``.pt`` on its own,
  a committed checkpoint whose record lists no files, the other files of a run folder.

A reader of the folder as a whole calls `check_run`, which also wants the manifest and every
run file present.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from crisp.errors import UserError
from crisp.io import check_output_dir, check_output_file, write_atomic

MANIFEST = "manifest.json"
FORMAT = "crisp-run"
VERSION = 1
#: The files ``crisp prune`` writes into its run folder, in the order it writes them.
RUN_FILES = ("model.pt", "pruned.safetensors", "record.json")


def check_writable(folder: str | Path) -> Path:
    """``folder`` as a `Path` if a run can be written there (see `crisp.io.check_output_dir`).

    Raises:
        UserError: the folder or one of its files (`RUN_FILES`, `MANIFEST`) cannot be written.
    """
    folder = check_output_dir(folder)
    for name in (*RUN_FILES, MANIFEST):
        check_output_file(folder / name)
    return folder


def begin(folder: Path) -> None:
    """Make ``folder`` and remove its manifest: from now on it is no complete run."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)


def seal(folder: Path, about: dict[str, object]) -> Path:
    """Write ``folder``'s manifest listing `RUN_FILES`, once they are all written.

    ``about`` adds fields (the command, its seed) beside ``format``, ``version`` and ``files``.
    """
    manifest = {"format": FORMAT, "version": VERSION, **about,
                "files": describe(folder, RUN_FILES)}
    return write_atomic(folder / MANIFEST,
                        lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))


def describe(folder: Path, names: Iterable[str]) -> dict[str, dict[str, object]]:
    """``{name: {"bytes": size, "sha256": hex digest}}`` of the files ``names`` in ``folder``."""
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
            for name in names}


def check_run(folder: str | Path) -> Path:
    """``folder`` as a `Path` if it holds one complete run: its manifest and `RUN_FILES`, each
    matching its entry. For readers of the folder as a whole (the demo, the benchmarks).

    Raises:
        UserError: no manifest, a missing file or one that does not match; one line.
    """
    folder = Path(folder)
    missing = [n for n in (MANIFEST, *RUN_FILES) if not (folder / n).is_file()]
    if missing:
        raise UserError(f"{folder} is no complete run (no {', '.join(missing)}): an interrupted "
                        f"run or files of different runs; re-run crisp prune --out {folder}")
    for name in RUN_FILES:
        check_file(folder / name)
    return folder


def check_file(path: str | Path | None) -> None:
    """Refuse to read ``path`` when it belongs to an inconsistent set of files.

    Checks it against its folder's manifest, else against the ``files`` of the ``.json`` record
    beside it (``crisp train``'s pair); see the module's docstring for which files are checked.
    None (no file given) and a path that is no file (the reader reports it) pass.

    Raises:
        UserError: ``path`` does not match the record that lists it, or is a run file in a
            folder with other run files and no manifest; one line saying to re-run.
    """
    if path is None or not Path(path).is_file():
        return
    path = Path(path)
    folder, name = path.parent, path.name
    if (folder / MANIFEST).is_file():
        _match(path, folder / MANIFEST, _read_record(folder / MANIFEST), name in RUN_FILES)
        return
    others = [n for n in RUN_FILES if n != name and (folder / n).exists()]
    if name in RUN_FILES and others:
        raise UserError(f"{path}: {folder} holds {', '.join(others)} but no {MANIFEST}: an "
                        f"interrupted run or files of different runs; re-run crisp prune --out "
                        f"{folder}")
    pair = path.with_suffix(".json")
    if pair != path and pair.is_file():
        try:
            record = json.loads(pair.read_text())
        except (OSError, ValueError):
            return  # no record of ours
        if isinstance(record, dict):
            _match(path, pair, record, required=False)


def _match(path: Path, record_path: Path, record: dict, required: bool) -> None:
    """Refuse ``path`` unless ``record``'s ``files`` entry for it matches its size and hash.

    A file the record does not list is refused only when ``required``.
    """
    files = record.get("files")
    entry = files.get(path.name) if isinstance(files, dict) else None
    if entry is None and not required:
        return
    if not isinstance(entry, dict) or entry.get("bytes") != path.stat().st_size \
            or entry.get("sha256") != _sha256(path):
        what = "is not listed in" if entry is None else "does not match"
        raise UserError(f"{path} {what} {record_path}: {path.parent} holds files of different "
                        f"runs; re-run crisp {record.get('command', 'prune')} to write them again")


def _read_record(path: Path) -> dict:
    """The manifest at ``path``; an unreadable one is a UserError."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        record = err
    if not isinstance(record, dict):
        reason = record if isinstance(record, Exception) else f"a JSON {type(record).__name__}"
        raise UserError(f"{path} is no readable manifest ({reason}); re-run the command that "
                        "wrote its folder")
    return record


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
