"""The settings of a pruning run: `PruneConfig` and the names it accepts.

Both `crisp.pruner` (the mask schemes and the dispatch) and `crisp.baselines` (the
model-level baselines it dispatches to) read these settings; keeping them here lets the import
graph run one way: ``pruner -> baselines -> config``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from crisp.errors import UserError
from crisp.layer_plan import MASK_SCHEMES, PATTERNS  # noqa: F401  (MASK_SCHEMES: public here too)
from crisp.pattern_core import DEFAULT_BLOCK
from crisp.patterns import check_block, check_nm
from crisp.recovery import RecoveryConfig
from crisp.schedule import check_density, default_density
from crisp.train import TrainConfig

SCHEMES = ("hybrid", "nm", "block", "unstructured", "channel", "dense")
HEADS = ("full", "shrink")


@dataclass(frozen=True)
class PruneConfig:
    """Everything that decides a pruning run besides the model and the data.

    Attributes:
        scheme: one of `SCHEMES`.
        density: final global density in (0, 1]; None = the paper's default for the class count
            (`crisp.schedule.default_density`). Ignored by ``nm`` (N:M fixes it).
        n, m: the N:M pattern (``hybrid``, ``nm``).
        block: block size B (``hybrid``, ``block``); default
            `crisp.pattern_core.DEFAULT_BLOCK` (16, which says why).
        step: fraction of the start density removed per round (0.1 in the paper's code).
        epochs: fine-tuning epochs after each round.
        head: ``full`` keeps every class (arg-max over all, as the paper's code); ``shrink`` cuts
            the classifier to the user's classes.
        exclude_first: leave the first conv dense.
        head_pattern: the classifier's pattern; None = ``nm`` for hybrid/nm, ``dense`` for block,
            ``unstructured`` for unstructured.
        train: optimiser settings of the fine-tuning (its ``epochs`` field is ignored, its
            ``balanced`` comes from ``recovery``).
        recovery: distillation, BatchNorm recalibration, balanced batches and the validation
            split of every fine-tuning round (`crisp.recovery.RecoveryConfig`).
        batch_size_grad: minibatch size of the gradient pass before pruning.
    """

    scheme: str = "hybrid"
    density: float | None = None
    n: int = 2
    m: int = 4
    block: int = DEFAULT_BLOCK
    step: float = 0.1
    epochs: int = 1
    head: str = "full"
    exclude_first: bool = True
    head_pattern: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    batch_size_grad: int = 64

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise UserError(f"scheme {self.scheme!r}: allowed {', '.join(SCHEMES)}")
        check_nm(self.n, self.m)
        check_block(self.block)
        if self.scheme == "hybrid" and self.block % self.m:
            raise UserError(f"block size {self.block} must be a multiple of M={self.m} for hybrid")
        if self.density is not None:
            check_density(self.density)
        check_density(self.step, "schedule step")
        if self.epochs < 0:
            raise UserError(f"epochs per round {self.epochs} must be >= 0")
        if self.head not in HEADS:
            raise UserError(f"head {self.head!r}: allowed {', '.join(HEADS)}")
        if self.head_pattern is not None and self.head_pattern not in PATTERNS:
            raise UserError(f"head pattern {self.head_pattern!r}: allowed {', '.join(PATTERNS)}")

    def target(self, num_classes: int) -> float:
        """The final density: the given one or the paper's default for ``num_classes``."""
        return self.density if self.density is not None else default_density(
            num_classes, self.n, self.m
        )

    def fine_tune(self) -> TrainConfig:
        """The optimiser settings with this run's epochs per round and batch balance."""
        return TrainConfig(**{**self.train.as_dict(), "epochs": self.epochs,
                              "balanced": self.recovery.balanced})

    def as_dict(self) -> dict[str, object]:
        """JSON-ready settings."""
        return asdict(self)
