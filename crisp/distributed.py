"""Data-parallel pruning and training across processes (``torchrun``), one model copy per rank.

``torchrun --nproc-per-node N -m crisp.cli prune ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; `init` joins them into one process group (NCCL on
CUDA, gloo on the CPU). Everything else in `crisp` asks this module and does nothing extra
when no group is active (one process), so a single-process run is unchanged:

- training wraps the model in ``DistributedDataParallel`` (gradients all-reduced, averaged) and
  draws its minibatches through a ``DistributedSampler`` (each rank sees 1/N of the data);
- saliency: each rank sums ``|dL/dW|`` over its own minibatches, `all_reduce_sum` adds the
  sums and the batch counts, so every rank scores with the same mean and builds the same masks;
  `check_identical` compares digests of the masks after every round and stops the run if
  any rank differs;
- evaluation splits the test set into disjoint shards and adds the counts (exact top-1);
- `agree` refuses to start when ranks were given different data, classes or seeds;
- only rank 0 (`is_main`) prints and writes files.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler, Subset

from crisp.devices import Runtime
from crisp.errors import UserError


def active() -> bool:
    """Whether this process is one rank of an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Whether this process prints and writes outputs (rank 0)."""
    return rank() == 0


def launched() -> bool:
    """Whether ``torchrun`` started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(runtime: Runtime) -> bool:
    """Join the ``torchrun`` process group if launched as one of several and not yet joined.

    Returns:
        whether this call created the group (the caller then destroys it, `session`).
    """
    if not launched() or active():
        return False
    if not dist.is_available():
        raise UserError("torch.distributed is not available in this torch build")
    dist.init_process_group(backend="nccl" if runtime.device.type == "cuda" else "gloo")
    return True


@contextlib.contextmanager
def session(runtime: Runtime) -> Iterator[None]:
    """Within the block, this process is a rank of the ``torchrun`` group (if launched so)."""
    created = init(runtime)
    try:
        yield
    finally:
        if created and active():
            # Free DDP wrappers still held in reference cycles while their group exists: freed
            # at interpreter exit, after the group, they aborted a torchrun rank now and then
            # ("terminate called without an active exception", exit -6).
            gc.collect()
            dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where collective tensors live: the current CUDA device under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (``tensor`` itself with one process).

    Returns a new tensor on ``tensor``'s device; the input is left unchanged.
    """
    if not active():
        return tensor
    buffer = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(tensor.device)


def all_reduce_grads(model: nn.Module) -> None:
    """Replace every parameter's ``.grad`` by its sum over all ranks (no-op with one process)."""
    if not active():
        return
    for param in model.parameters():
        if param.grad is not None:
            param.grad.copy_(all_reduce_sum(param.grad))


def broadcast_state(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics, masks) to every rank, in place."""
    if not active():
        return
    for buffer in model.buffers():
        synced = buffer.detach().to(_comm_device(), copy=True)
        dist.broadcast(synced, src=0)
        buffer.copy_(synced.to(buffer.device))


def wrap(model: nn.Module, runtime: Runtime) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when a group is active, else ``model`` itself."""
    if not active():
        return model
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def sampler(dataset: Dataset, shuffle: bool, seed: int) -> DistributedSampler | None:
    """This rank's share of ``dataset`` (padded so every rank has as many), None with one process.

    Args:
        seed: the shuffling seed, the same on every rank (call ``set_epoch`` each epoch).
    """
    if not active():
        return None
    return DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle,
                              seed=seed, drop_last=False)


def shard(dataset: Dataset) -> Dataset:
    """Disjoint evaluation shard of this rank: samples ``rank, rank + N, ...`` (no padding)."""
    if not active():
        return dataset
    return Subset(dataset, range(rank(), len(dataset), world_size()))


def _gather(value: object) -> list[object]:
    gathered: list[object] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def agree(what: dict[str, object]) -> None:
    """Refuse to go on unless every rank holds the same ``what`` (data set, classes, seed ...).

    Raises:
        UserError: on every rank, naming the first field and rank that differ.
    """
    if not active():
        return
    text = json.dumps(what, sort_keys=True, default=str)
    values = _gather(text)
    mine = json.loads(text)
    for other_rank, other in enumerate(values):
        theirs = json.loads(other)
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                raise UserError(
                    f"ranks disagree on {key}: rank {rank()} has {mine.get(key)!r}, rank "
                    f"{other_rank} has {theirs.get(key)!r}; every rank must be given the same "
                    "data set, classes and seeds"
                )


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, shapes and bytes of ``tensors`` (in name order), as hex."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def check_identical(tensors: dict[str, torch.Tensor], what: str) -> str:
    """The digest of ``tensors``, after checking every rank holds the same.

    Raises:
        RuntimeError: the ranks' tensors differ (a bug, not a user mistake).
    """
    mine = digest(tensors)
    if active():
        digests = _gather(mine)
        if len(set(digests)) > 1:
            raise RuntimeError(f"{what} differ between ranks: digests {digests}")
    return mine
