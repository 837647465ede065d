"""Learning-rate schedules that take their length from the run, stepped per optimizer step.

A schedule typed in epochs (``CosineAnnealingLR(T_max=18)``) is silently wrong as soon as a
sweep or a command line changes ``max_epochs``, sets ``max_steps`` or ``max_time`` instead, or
changes the batch count per epoch. Here the schedule's only clock is the run's progress in
[0, 1], which the module computes from the trainer (steps done / ``estimated_stepping_batches``,
or the share of ``max_time`` used, whichever is further), so every way of setting the run
length gives a complete schedule. torch's schedulers cannot follow a time budget, hence this
small class around ``LambdaLR``.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from lightning.pytorch.callbacks import Timer


def time_budget(trainer) -> Timer | None:
    """The ``Timer`` Lightning adds for ``max_time`` (``None`` when the run has no time limit)."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    return timer if timer is not None and timer.time_remaining() is not None else None


class RunLengthSchedule:
    """Warm-up, then a decay over the rest of the run, as a multiplier of the optimizer's ``lr``.

    nnU-Net trains with ``poly`` (exponent 0.9), per step; transformer recipes usually warm up
    linearly and decay with a cosine.

    Args:
        decay: ``cosine`` (to ``final_fraction``), ``poly`` (``(1 - progress) ** exponent``,
            floored at ``final_fraction``), or ``constant``.
        warmup_fraction: share of the run spent raising the rate linearly from ~0 to ``lr``.
        final_fraction: the rate at the end of the run, as a fraction of ``lr``.
        exponent: exponent of the ``poly`` decay.
    """

    def __init__(self, decay: Literal["cosine", "poly", "constant"] = "cosine", warmup_fraction: float = 0.0,
                 final_fraction: float = 0.0, exponent: float = 0.9):
        if decay not in ("cosine", "poly", "constant"):
            raise ValueError(f"decay must be cosine, poly or constant, got {decay!r}")
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if not 0 <= final_fraction <= 1:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction}")
        if exponent <= 0:
            raise ValueError(f"exponent must be positive, got {exponent}")
        self.decay = decay
        self.warmup_fraction = warmup_fraction
        self.final_fraction = final_fraction
        self.exponent = exponent

    def factor(self, progress: float) -> float:
        """The multiplier of ``lr`` at ``progress`` (0: start of the run, 1: its end)."""
        progress = min(max(progress, 0.0), 1.0)
        if progress < self.warmup_fraction:
            # never exactly 0: the first steps of a warm-up still move the weights a little
            return max(progress / self.warmup_fraction, 1e-3)
        if self.decay == "constant":
            return 1.0
        rest = (progress - self.warmup_fraction) / (1.0 - self.warmup_fraction)
        if self.decay == "cosine":
            return self.final_fraction + (1.0 - self.final_fraction) * 0.5 * (1.0 + math.cos(math.pi * rest))
        return max((1.0 - rest) ** self.exponent, self.final_fraction)

    def build(self, optimizer: torch.optim.Optimizer, progress: Callable[[int], float]) -> dict:
        """Lightning's scheduler config: ``LambdaLR`` stepped after every optimizer step, where
        ``progress(step)`` says how far through the run that step is."""
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.factor(progress(step)))
        return {"scheduler": scheduler, "interval": "step", "frequency": 1}
