"""Weight averages kept beside the trained weights: an EMA, or airbench's lookahead.

One :class:`WeightAverage` per :func:`compat.train.fit` call: it is updated after every optimizer step, says
which model would be saved now, goes into the checkpoint, and at the end writes the average into the model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def averaged_tensors(model: nn.Module) -> list[torch.Tensor]:
    """What a weight average covers: the parameters and the floating-point buffers (BatchNorm statistics)."""
    return [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]


def ema_step(decay: float):
    """EMA update with a warm-up of the decay, min(decay, (1 + n) / (10 + n)) after n updates (as TensorFlow's
    ``ExponentialMovingAverage(num_updates=n)``), so that a short run's average is not dominated by the initial weights."""

    def step(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        return d * averaged + (1 - d) * current

    return step


class Lookahead:
    """airbench's lookahead (Jordan 2024, arXiv 2404.00498, Sec. 3.6; Zhang et al., NeurIPS 2019): a slow copy of
    the parameters and buffers; every ``every`` steps ``slow += (1 - d) (w - slow)`` and ``w = slow``, with the
    decay ``d = 0.95^5 (t / T)^3`` rising over the run (no averaging at first); :meth:`finish` sets ``w = slow``."""

    def __init__(self, model: nn.Module, every: int, total: int) -> None:
        self.model, self.every, self.total = model, every, total
        self.slow = [t.detach().clone() for t in averaged_tensors(model)]

    @torch.no_grad()
    def step(self, step: int) -> None:
        """After optimizer step ``step`` (0-based, counted over the whole run)."""
        if (step + 1) % self.every == 0:
            self._pull(0.95**5 * ((step + 1) / self.total) ** 3)

    @torch.no_grad()
    def _pull(self, decay: float) -> None:
        fast = averaged_tensors(self.model)
        torch._foreach_lerp_(self.slow, fast, 1 - decay)
        torch._foreach_copy_(fast, self.slow)

    @torch.no_grad()
    def finish(self) -> None:
        self._pull(1.0)

    def slow_model(self) -> nn.Module:
        """A copy of the model holding the slow weights (what the run would end on now)."""
        saved = copy.deepcopy(self.model)
        with torch.no_grad():
            torch._foreach_copy_(averaged_tensors(saved), self.slow)
        return saved

    def state_dict(self) -> dict:
        return {"slow": self.slow}

    def load_state_dict(self, state: dict) -> None:
        self.slow = [t.clone() for t in state["slow"]]


class WeightAverage:
    """The weight averages a :class:`compat.train.TrainConfig` asks for (``ema_decay``, ``lookahead_every``; none,
    either or both) over ``total`` optimizer steps of ``model``. Made after the model's weights are initialised
    and before a checkpoint is loaded into it (:meth:`load_state_dict` then restores the averages)."""

    def __init__(self, model: nn.Module, ema_decay: float, lookahead_every: int, total: int) -> None:
        self.model = model
        self.ema = None
        if ema_decay:
            self.ema = torch.optim.swa_utils.AveragedModel(model, avg_fn=ema_step(ema_decay), use_buffers=True)
        self.lookahead = Lookahead(model, lookahead_every, total) if lookahead_every else None

    @property
    def kept(self) -> bool:
        """Whether any average is kept (then the saved model differs from the raw weights)."""
        return self.ema is not None or self.lookahead is not None

    def update(self, step: int) -> None:
        """After optimizer step ``step`` (0-based, over the whole run)."""
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        if self.lookahead is not None:
            self.lookahead.step(step)

    def saved(self) -> nn.Module:
        """The model as the run would save it now: the EMA's copy, the lookahead's slow weights (a copy), or the model."""
        if self.ema is not None:
            return self.ema.module
        return self.model if self.lookahead is None else self.lookahead.slow_model()

    def finish(self) -> None:
        """Write the average into the model: the EMA's weights, then the lookahead's last pull."""
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
        if self.lookahead is not None:
            self.lookahead.finish()

    def state_dict(self) -> dict:
        """The checkpoint's entries: ``ema`` and ``lookahead``, for those kept."""
        state = {}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.lookahead is not None:
            state["lookahead"] = self.lookahead.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore the kept averages from a checkpoint's entries (see :meth:`state_dict`)."""
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead is not None:
            self.lookahead.load_state_dict(state["lookahead"])
