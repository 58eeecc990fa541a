"""CRISP: prune an image classifier for the few classes one user meets (hybrid N:M + block).

    from crisp import PruneConfig, build_model, load_dataset, prune, user_subset

    model = build_model("resnet_small", checkpoint="checkpoints/resnet_small_glyph100.pt")
    train, classes = user_subset(load_dataset("glyph100", "train"), 5, n_per_class=128)
    test, _ = user_subset(load_dataset("glyph100", "test"), classes, n_per_class=None)
    result = prune(model, train, test, classes, PruneConfig(density=0.1, epochs=1))
    print(result.final["density"], result.final["top1"])  # kept fraction, user-class top-1 (%)

The names of `__all__` load on first use (PEP 562): importing ``crisp``, as the simulator
does for `crisp.errors` and `crisp.pattern_core`, imports no torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

_EXPORTS = {
    "prune": "crisp.pruner",
    "PruneResult": "crisp.pruner",
    "PruneConfig": "crisp.config",
    "build_model": "crisp.models",
    "load_dataset": "crisp.data",
    "user_subset": "crisp.data",
    "nm_mask": "crisp.patterns",
    "block_mask": "crisp.patterns",
    "hybrid_mask": "crisp.patterns",
}
__all__ = list(_EXPORTS)


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's PEP 562 ``__getattr__`` and ``__dir__`` for names loaded on first use.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the module that defines it; the module is imported the first
            time the name is asked for, and the name then stays in the package's namespace.
    """

    def getattr_(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return getattr_, dir_


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
