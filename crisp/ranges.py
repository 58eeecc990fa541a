"""The allowed range of every number a user gives: one `Range` per quantity, checked where it
enters.

A number enters through a command-line flag (`Range.flag` is the flag's argparse ``type``, so
a bad value stops the command before any work starts), a hardware TOML or SCALE-Sim ``.cfg``
field (`accel_sim.hardware.SCHEMA`), a topology CSV or a compressed file's header. The same
objects check the Python API's settings (`crisp.config.PruneConfig`, ...) and write the tables
of allowed values in the docs (``reference/cli.md``, ``reference/hardware-keys.md``), so the
documented range and the enforced one cannot drift apart.

Every range is finite unless it says ``inf`` is allowed (an ideal DRAM), and NaN never is.
A refused value raises `crisp.errors.UserError` with one line naming the value and the range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from crisp.errors import UserError

Number = int | float


@dataclass(frozen=True)
class Range:
    """An interval of allowed values of one quantity.

    Attributes:
        kind: ``int`` (integral values only; a float such as ``1e300`` or ``2.5`` is refused
            unless it equals an integer in range) or ``float``.
        low, high: the bounds, inclusive unless ``low_open`` / ``high_open``.
        low_open: ``low`` itself is not allowed (``(0, 1]``).
        high_open: ``high`` itself is not allowed.
        infinite: ``float("inf")`` is allowed too (above ``high``), with the meaning the
            quantity's docs give it.
        unit: the unit the value is in, for the docs (``"bytes/cycle"``); empty if none.
    """

    kind: type
    low: Number
    high: Number
    low_open: bool = False
    high_open: bool = False
    infinite: bool = False
    unit: str = ""

    def allowed(self) -> str:
        """The range in words, e.g. ``an integer in 1..65536`` or ``a number in (0, 1]``."""
        low, high = _show(self.low), _show(self.high)
        if self.kind is int:
            text = f"an integer in {low}..{high}"
        else:
            text = (f"a number in {'(' if self.low_open else '['}{low}, {high}"
                    f"{')' if self.high_open else ']'}")
        return text + (" or inf" if self.infinite else "")

    def check(self, value: object, name: str) -> Number:
        """``value`` as ``kind`` if it lies in the range.

        Args:
            value: an int or float (a bool is refused: ``true`` is not a number here).
            name: how the user wrote the quantity, for the message (``--block``,
                ``[memory] dram_bytes_per_cycle``).

        Raises:
            UserError: ``<name> = <value>: allowed <range>``.
        """
        problem = self.problem(value)
        if problem:
            raise UserError(f"{name} = {value!r}{problem}")
        return self._cast(value)

    def problem(self, value: object) -> str:
        """What is wrong with ``value`` (``": allowed ..."``), or an empty string if nothing."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f" is not a number: allowed {self.allowed()}"
        if value == math.inf and self.infinite:
            return ""
        inside = math.isfinite(value) and (self.kind is float or value == int(value)) and (
            (value > self.low if self.low_open else value >= self.low)
            and (value < self.high if self.high_open else value <= self.high))
        return "" if inside else f": allowed {self.allowed()}"

    def parse(self, text: str, name: str) -> Number:
        """A value written as text (a flag, a CSV cell): ``int`` or ``float`` syntax, then
        `check`.

        Raises:
            UserError: ``<name> = '<text>': allowed <range>`` (or: is not a number).
        """
        problem, value = self._parse(text)
        if problem:
            raise UserError(f"{name} = {text!r}{problem}")
        return value

    def flag(self, name: str) -> Callable[[str], Number]:
        """An argparse ``type=`` for flag ``name``: parses and checks the value at parse time.

        argparse reports a refusal through ``parser.error`` as ``argument <name>: '<text>':
        allowed <range>`` (one line with `crisp.errors.Parser`).
        """

        def convert(text: str) -> Number:
            problem, value = self._parse(text)
            if problem:
                raise argparse.ArgumentTypeError(f"{text!r}{problem}")
            return value

        convert.__name__ = name  # what argparse names in its own messages
        convert.range = self  # type: ignore[attr-defined]  # for the docs' table of flags
        return convert

    def _parse(self, text: str) -> tuple[str, Number]:
        """(problem or "", the value) of ``text``."""
        try:
            value: Number = int(text) if self.kind is int else float(text)
        except ValueError:
            kind = "an integer" if self.kind is int else "a number"
            return f" is not {kind}: allowed {self.allowed()}", 0
        problem = self.problem(value)
        return problem, (0 if problem else self._cast(value))

    def _cast(self, value: Number) -> Number:
        return value if value == math.inf else self.kind(value)


def _show(bound: Number) -> str:
    """A bound as people write it: ``4294967295``, ``0.5``, ``2**-12``, ``1e+06``."""
    mantissa, exponent = math.frexp(bound)
    if mantissa == 0.5 and not -4 < exponent - 1 < 16:
        return f"2**{exponent - 1}"
    return str(int(bound)) if bound == int(bound) and abs(bound) < 2**53 and (
        isinstance(bound, int) or abs(bound) < 1e5) else f"{bound:g}"


BLOCK = Range(int, 1, 1024, unit="weights")
"""Block size B (a B x B weight tile). 1024 is far above any useful block (the array side at
most, `crisp.pattern_core.DEFAULT_BLOCK` by default) and bounds a block bitmap's memory."""
SEED = Range(int, 0, 2**32 - 1)
"""A seed (``--seed``, ``--data-seed``): any 32-bit unsigned integer, as numpy and torch take."""
RESOLUTION = Range(int, 1, 8192, unit="pixels")
"""Input height = width of a network (``--resolution``, ``--image-size``)."""
BATCH = Range(int, 1, 65536, unit="samples")
"""Samples per inference (``--batch``); a layer's size limit
(`accel_sim.workload.MAX_MACS`) applies on top."""
BATCH_SIZE = Range(int, 1, 65536, unit="images")
"""Images per training step (``--batch-size``)."""
DENSITY = Range(float, 0, 1, low_open=True)
"""Fraction of weights kept."""
SWEEP_WORKERS = Range(int, 1, 1024, unit="processes")
"""Worker processes of a sweep's local Dask cluster (``--workers``)."""
LOADER_WORKERS = Range(int, 0, 256, unit="processes")
"""DataLoader worker processes (``--workers``; 0 loads in the main process)."""
THREADS = Range(int, 1, 1024, unit="threads")
"""CPU threads of torch (``--threads``)."""
EPOCHS = Range(int, 0, 10000, unit="epochs")
"""Training epochs (per pruning round for ``crisp prune``); 0 = no fine-tuning."""
LR = Range(float, 0, 1e6, low_open=True)
"""Peak learning rate."""
FRACTION = Range(float, 0, 1)
"""A share in [0, 1] (``--distill-weight``)."""
WARMUP = Range(float, 0, 1, high_open=True)
"""Warm-up share of a training run's steps (``--warmup``)."""
PERCENT = Range(float, 0, 100, unit="points")
"""Percentage points (a warning margin of top-1 accuracy)."""
STEP = Range(float, 0, 1, low_open=True)
"""Fraction of the start density removed per pruning round."""
TEMPERATURE = Range(float, 0, 1000, low_open=True)
"""Distillation temperature."""
VAL_SHARE = Range(float, 0, 0.5, low_open=True)
"""Share of each class's training images held out for validation."""
PER_CLASS = Range(int, 1, 10**7, unit="images")
"""Images per class (``--n-per-class``, ``--train-per-class``)."""
