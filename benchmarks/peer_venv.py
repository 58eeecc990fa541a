"""A private virtualenv under ``.cache/`` for a peer tool the cross-check benchmarks run.

Peer simulators (SCALE-Sim, ZigZag) pin dependencies that clash with the project's own, so each
gets its own environment, created on first use with the ordinary pip client and reused after.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"


def ensure_venv(name: str, requirements: list[str]) -> Path:
    """The interpreter of ``.cache/<name>``, creating it with ``requirements`` on first use.

    A stamp file written after a successful install marks the environment complete, so an
    interrupted install is redone on the next call.
    """
    venv = CACHE / name
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = "\n".join(requirements)
    if not (stamp.exists() and stamp.read_text() == wanted):
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
        stamp.write_text(wanted)
    return python
