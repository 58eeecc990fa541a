"""Where the pruning front-end runs: the device, bf16 autocast, DataLoader workers, memory format.

One frozen `Runtime` says how (not what) to compute; `runtime` builds it from the
command line's words (``--device auto|cpu|cuda|mps``, ``--amp/--no-amp``, ``--workers``):

- ``auto`` picks CUDA when present, else the CPU (never MPS on its own: its kernels differ);
- ``cuda`` on a machine without CUDA, or ``mps`` off macOS / without Metal, is a one-line
  `crisp.errors.UserError`;
- on CUDA the forward passes run under ``torch.autocast(dtype=torch.bfloat16)`` (no loss scaling
  needed for bf16) unless ``amp`` is off, batches come from pinned memory, and convolution
  weights and inputs use ``channels_last``. On the CPU and MPS nothing of that is on by default,
  so CPU runs stay bit-for-bit reproducible.

Under ``torchrun`` each rank uses ``cuda:LOCAL_RANK`` (see `crisp.distributed`).
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass, field

import torch
from torch import nn

from crisp.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Runtime:
    """How the front-end computes (never what): results differ only by float rounding.

    Attributes:
        device: the torch device every model, mask and batch lives on.
        amp: bf16 autocast of forward passes (CUDA only).
        workers: DataLoader worker processes (0 = load in the main process).
        channels_last: NHWC memory format for 4-D weights and input batches.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: bool = False
    workers: int = 0
    channels_last: bool = False

    @property
    def pin_memory(self) -> bool:
        """Pinned host memory for batches (only worth it when they go to a CUDA device)."""
        return self.device.type == "cuda"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready settings for a run's record."""
        return {"device": str(self.device), "amp": self.amp, "workers": self.workers,
                "channels_last": self.channels_last}

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of a forward pass: bf16 autocast on CUDA when ``amp``, else nothing."""
        if self.amp and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """An image batch ``[B, C, H, W]`` as float32 on the device (in its memory format).

        The copy leaves pinned memory asynchronously; the cast runs on the device.
        """
        images = images.to(self.device, non_blocking=self.pin_memory).float()
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def sync(self) -> None:
        """Wait for the device's queued work (CUDA runs asynchronously; for honest timings)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def place(self, model: nn.Module) -> nn.Module:
        """Move ``model`` (parameters, buffers, masks) to the device, in place; returns it."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model


def mps_available() -> bool:
    """Whether this torch build and machine offer Apple's Metal backend."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device for ``--device name``.

    Args:
        name: one of `DEVICES` (or ``cuda:N``).
        local_rank: this process's rank on its machine under ``torchrun`` (picks ``cuda:N``).

    Raises:
        UserError: an unknown name, or a backend this machine does not have (one line).
    """
    base, _, index = name.partition(":")
    if base not in DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise UserError(f"--device {name!r}: allowed {', '.join(DEVICES)} (or cuda:N)")
    if base == "auto":
        base = "cuda" if torch.cuda.is_available() else "cpu"
    if base == "cpu":
        return torch.device("cpu")
    if base == "mps":
        if platform.system() != "Darwin" or not mps_available():
            raise UserError(f"--device mps: Apple's Metal backend is not available on this "
                            f"{platform.system()} machine; use --device cpu or auto")
        return torch.device("mps")
    if not torch.cuda.is_available():
        why = ("this torch build has no CUDA support" if torch.version.cuda is None
               else "no CUDA device is visible")
        raise UserError(f"--device {name}: {why} (torch {torch.__version__}); "
                        "use --device cpu or auto")
    count = torch.cuda.device_count()
    chosen = int(index) if index else (local_rank or 0)
    if chosen >= count:
        raise UserError(f"--device {name}: CUDA device {chosen} does not exist "
                        f"(this machine has {count})")
    return torch.device("cuda", chosen)


def runtime(
    device: str = "auto",
    amp: bool | None = None,
    workers: int = 0,
    channels_last: bool | None = None,
    local_rank: int | None = None,
) -> Runtime:
    """A `Runtime` from the command line's words.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        amp: bf16 autocast; None = on for CUDA. Asking for it elsewhere is a UserError.
        workers: DataLoader worker processes, >= 0.
        channels_last: None = on for CUDA.
        local_rank: the process's rank on its machine under ``torchrun`` (default from the
            ``LOCAL_RANK`` environment variable when set).
    """
    if workers < 0:
        raise UserError(f"--workers {workers} must be >= 0")
    if local_rank is None and "LOCAL_RANK" in os.environ:
        local_rank = int(os.environ["LOCAL_RANK"])
    if ":" in device and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(f"--device {device}: under torchrun each rank uses cuda:LOCAL_RANK; "
                        "give --device cuda (or auto)")
    dev = resolve_device(device, local_rank)
    cuda = dev.type == "cuda"
    if amp and not cuda:
        raise UserError(f"--amp: bf16 autocast is only used on CUDA, not on {dev.type}; "
                        "drop --amp or use --device cuda")
    if cuda:
        torch.cuda.set_device(dev)
    return Runtime(device=dev, amp=cuda if amp is None else amp, workers=workers,
                   channels_last=cuda if channels_last is None else channels_last)


def as_runtime(value: Runtime | str | torch.device | None) -> Runtime:
    """Accept a Runtime, a device name or None (the CPU defaults) where the API takes one."""
    if value is None:
        return Runtime()
    if isinstance(value, Runtime):
        return value
    return runtime(str(value))

