"""Shared test helpers: running the command blocks of a documentation page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.M | re.S)
TIMEOUT_S = 300


def doc_blocks(text: str) -> list[tuple[str, str]]:
    """A page's ``(language, code)`` blocks of ``bash`` and ``python``, in order."""
    return BLOCK.findall(text)


def _run_blocks(text: str, folder: Path) -> list[str]:
    """Run every ``bash`` and ``python`` block of ``text`` in order in ``folder`` (given a link
    to the repository's ``checkpoints/``, as the pages run from the root), with this venv's
    commands first on PATH; fail with the block and its output if one exits non-zero. Returns
    what each block printed."""
    (folder / "checkpoints").symlink_to(ROOT / "checkpoints", target_is_directory=True)
    bin_dir = str(Path(sys.executable).parent)  # crisp, accel-sim and python of this venv
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    printed = []
    for number, (language, code) in enumerate(doc_blocks(text), 1):
        command = (["bash", "-euo", "pipefail", "-c", code] if language == "bash"
                   else [sys.executable, "-c", code])
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
        assert done.returncode == 0, (
            f"block {number} ({language}) exited {done.returncode}:\n{code}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
        printed.append(done.stdout)
    return printed


@pytest.fixture
def run_doc_blocks() -> Callable[[str, Path], list[str]]:
    """The runner of a page's command blocks (`_run_blocks`)."""
    return _run_blocks
