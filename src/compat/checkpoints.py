"""A training run's working folder: ``checkpoint.pt`` after every epoch (written atomically), ``log.jsonl``
(one line per epoch), kept checkpoints ``epoch-E.pt`` that another run may branch from, and resuming.

Only rank 0 of a multi-process run reads and writes; the others take rank 0's checkpoint (:mod:`compat.distributed`).
A damaged checkpoint is never resumed from: it is said, removed, and training starts afresh.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Collection
from pathlib import Path

import torch

from . import distributed
from .store import read_torch, write_torch


def kept_checkpoint(workdir: Path, epoch: int) -> Path:
    """Where a run in ``workdir`` keeps its checkpoint after ``epoch`` (when asked to, see :class:`Checkpoints`)."""
    return workdir / f"epoch-{epoch}.pt"


def _read(path: Path, dev: torch.device) -> dict | None:
    """The checkpoint at ``path``, or None: absent, or damaged (then said, removed, and training starts afresh)."""
    if not path.exists():
        return None
    try:
        return read_torch(path, map_location=dev)
    except Exception as exc:  # damaged or unreadable: never resume from it
        warnings.warn(f"checkpoint {path} is damaged ({exc}); training starts afresh", stacklevel=3)
        path.unlink(missing_ok=True)
        return None


class Checkpoints:
    """The checkpoints of one run in ``workdir`` (None: none kept, nothing resumed), also kept after each epoch
    in ``keep_epochs`` (1-based) so that a run training exactly like this one up to there can branch from it."""

    def __init__(self, workdir: Path | None, keep_epochs: Collection[int] = ()) -> None:
        self.workdir, self.keep_epochs = workdir, frozenset(keep_epochs)

    def resume(self, dev: torch.device, branch: Path | None = None) -> tuple[dict | None, int | None]:
        """(the state to continue from, the epoch the run branched at) on every rank: the run's own checkpoint;
        else the kept checkpoint ``branch`` of another run, with its loss terms' states dropped (they start fresh);
        else (None, None). A resumed branch stays one (its checkpoint records the epoch)."""
        state = branched = None
        if distributed.is_writer():
            if self.workdir is not None:
                state = _read(self.workdir / "checkpoint.pt", dev)
            if state is None and branch is not None:
                state = _read(branch, dev)
                if state is not None:
                    state, branched = {**state, "terms": {}}, state["epoch"]
            if state is not None:
                branched = branched or state.get("branched_at_epoch")
        return distributed.from_writer((state, branched))

    def save(self, entry: dict, state: Callable[[], dict]) -> None:
        """After an epoch: append its log ``entry`` and write ``state()`` (built only where it is written) as the
        checkpoint, and as a kept one when ``entry["epoch"]`` is in ``keep_epochs``. Rank 0 only; nothing without a workdir."""
        if self.workdir is None or not distributed.is_writer():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "log.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        snapshot = state()
        write_torch(self.workdir / "checkpoint.pt", snapshot)
        if entry["epoch"] in self.keep_epochs:
            write_torch(kept_checkpoint(self.workdir, entry["epoch"]), snapshot)
