"""What the command lines show on a terminal: their ``--version`` line and progress bars.

Torch-free: the simulator's command line (`accel_sim.cli`) uses it too.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from importlib import metadata

from tqdm import tqdm

DISTRIBUTION = "crisp-sim"
"""The name this project is installed under (``pip show crisp-sim``)."""


def version() -> str:
    """The installed ``crisp-sim`` version, e.g. ``"0.1.0"``, read from the package metadata;
    ``"unknown (...)"`` saying why where that metadata is missing (a source tree never
    installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return f"unknown (no package metadata of {DISTRIBUTION}: install it with pip)"


def add_version(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--version`` flag: print ``<prog> <version>`` and exit with status 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                        help="print the program's name and version, then exit")


def progress_bar(iterable: Iterable | None = None, progress: bool = True,
                 **options: object) -> tqdm:
    """A tqdm bar over ``iterable`` that appears only where it helps.

    Args:
        iterable: what the bar wraps (None: call ``update`` by hand, with ``total=``).
        progress: False = no bar, whatever the environment says.
        options: tqdm's other keywords (``desc``, ``total``, ``unit``, ``leave``, ...).

    With ``progress`` on, an environment variable ``TQDM_DISABLE`` decides when it is set
    (tqdm >= 4.66 takes ``TQDM_*`` variables, read when tqdm is first imported, as the defaults
    of the keywords a caller leaves out, so ``disable`` is left out then); otherwise the bar
    shows only when its stream (stderr) is a terminal (``disable=None``): a log redirected to a
    file holds no bar redraws.
    """
    if not progress:
        options["disable"] = True
    elif "TQDM_DISABLE" not in os.environ:
        options["disable"] = None
    return tqdm(iterable, **options)
