"""Several training processes (``torchrun``): who is who, the one writer, and the job hand-out.

``torchrun --nproc_per_node N -m compat run EXPERIMENT ...`` runs the same command N times. Rank 0
runs the experiment as a single process would (store, embeddings, evaluation, result files: rank 0
is the only writer); the other ranks only help train image models: rank 0 hands each model's spec
to them (:func:`announce`) right before it trains it, and they train it with it
(:func:`serve`); :func:`compat.train.fit` splits each global batch between the ranks and
DistributedDataParallel averages the gradients. The global batch and the BatchNorm groups are
fixed by the config (``train.batch_size``, ``train.bn_batch``), so a model's numbers do not depend
on the number of processes and its store key stays valid. One machine (or a shared filesystem):
the workers read the models and embeddings rank 0 stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather

from .errors import CompatError, ConfigError

_STOP = "stop"


def world() -> tuple[int, int]:
    """(rank, number of processes): (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_writer() -> bool:
    """Whether this process may write files (rank 0, or a single process)."""
    return world()[0] == 0


def check_writer(path) -> None:
    """Refuse a write from a rank other than 0: only rank 0 writes to the store and the result files."""
    rank, size = world()
    if rank != 0:
        raise CompatError(f"rank {rank} of {size} tried to write {path}: only rank 0 writes (a bug in the caller)")


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes in the environment (WORLD_SIZE > 1): gloo on the CPU,
    NCCL on GPUs. Returns whether this is a multi-process run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def from_writer(value):
    """Rank 0's ``value`` on every rank (a picklable object; itself outside a group)."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass(frozen=True)
class Sharding:
    """How a global batch of a training step splits between the processes: this process (``rank`` of ``size``)
    holds rows ``[rank * share, (rank + 1) * share)``; BatchNorm statistics are taken over groups of ``group``
    images, whatever the number of processes (so a model's numbers and key do not depend on it)."""

    rank: int
    size: int
    share: int
    group: int

    @classmethod
    def of(cls, batch_size: int, bn_batch: int) -> Sharding:
        """This process's sharding of ``batch_size`` rows with BatchNorm groups of ``bn_batch`` (0: the whole
        batch); a ConfigError where the batch or the groups do not split evenly between the processes."""
        rank, size = world()
        if batch_size % size:
            raise ConfigError(f"batch_size={batch_size} does not split between {size} processes")
        share = batch_size // size
        group = bn_batch or batch_size
        if group > share or share % group:
            raise ConfigError(
                f"{size} processes each hold {share} images of a step, but bn_batch={bn_batch} asks for BatchNorm "
                f"statistics over {group}: set train.bn_batch to a divisor of {share} (another key), or train on one process"
            )
        return cls(rank, size, share, group)

    def local(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch."""
        return rows[self.rank * self.share : (self.rank + 1) * self.share]


def announce(job) -> None:
    """Rank 0: hand ``job`` (a picklable spec, or the stop sign) to the other ranks; nothing outside a group."""
    if world()[1] > 1:
        dist.broadcast_object_list([job], src=0)


def serve(train: Callable[[object], None]) -> None:
    """Ranks > 0: train every job rank 0 announces with ``train(job)``, until it announces the stop."""
    while True:
        box = [None]
        dist.broadcast_object_list(box, src=0)
        if box[0] == _STOP:
            return
        train(box[0])


def finish() -> None:
    """Rank 0 releases the workers; every rank leaves the process group."""
    if dist.is_initialized():
        if is_writer():
            announce(_STOP)
        dist.destroy_process_group()


def gather_rows(local: torch.Tensor, num_views: int) -> torch.Tensor:
    """Every rank's rows of a step output, in the single-process order (view-major, then rank, then image), with
    gradients flowing back to each rank's own rows: for terms that couple the whole batch (NT-Xent's negatives)."""
    rank, size = world()
    if size == 1:
        return local
    parts = torch.stack(all_gather(local))  # size x (views * b) x ...
    parts = parts.reshape(size, num_views, -1, *local.shape[1:]).transpose(0, 1)
    return parts.reshape(-1, *local.shape[1:])
