"""The pruning schedule as pure functions.

CRISP prunes in rounds. Round 0 applies the fine pattern (N:M), which sets the *start* density
(about N/M of the weights). Each later round lowers the kept fraction of block ranks by ``step``
of the start (the public code removes 10 percent of the block ranks a round), so round t targets
``start * (1 - t * step)``, until the target density; the last round lands exactly on it:
``schedule(0.25, 0.5, 0.1)`` is ``[0.5, 0.45, 0.4, 0.35, 0.3, 0.25]``.

The paper picks how much to remove by the number of user classes, as a fraction ``p`` of the block
ranks removed: p = 0.4 for 1 class, 0.3 for 2-3, 0.2 for 4-10 (and, our extension, 0.1 beyond),
giving a final density of about ``(N/M) * (1 - p)`` after N:M (0.3, 0.35 and 0.4 with 2:4).
`default_density` returns that target when the user names none.
"""

from __future__ import annotations

import math

from crisp import ranges
from crisp.errors import UserError


def check_density(density: float, what: str = "density") -> None:
    """Raise UserError unless ``0 < density <= 1``."""
    ranges.DENSITY.check(density, what)


def paper_p(num_classes: int) -> float:
    """Fraction of block ranks the paper removes for ``num_classes`` user classes."""
    if num_classes < 1:
        raise UserError(f"number of user classes {num_classes} must be >= 1")
    if num_classes == 1:
        return 0.4
    if num_classes <= 3:
        return 0.3
    return 0.2 if num_classes <= 10 else 0.1


def default_density(num_classes: int, n: int, m: int) -> float:
    """The paper's final density for ``num_classes`` classes with N:M: ``(n/m) * (1 - p)``."""
    return n / m * (1 - paper_p(num_classes))


def schedule(target: float, start: float, step: float) -> list[float]:
    """Density per round: ``start`` (round 0), then ``start * (1 - t*step)``, ending at ``target``.

    Args:
        target: final global density, in (0, 1].
        start: density after round 0 (the fine pattern alone); a target at or above it gives one
            round.
        step: fraction of the start density removed per round, in (0, 1].

    Returns:
        densities per round (rounded to 12 decimals), strictly decreasing, first ``start``, last
        ``target``; just ``[start]`` when the target is at or above the start.
    """
    check_density(target, "target density")
    check_density(start, "start density")
    check_density(step, "schedule step")
    if target >= start:
        return [start]
    # A last step shorter than 5 percent of a step is merged into the one before.
    rounds = max(1, math.ceil((1 - target / start) / step - 0.05))
    return [round(start * (1 - t * step), 12) for t in range(rounds)] + [target]
