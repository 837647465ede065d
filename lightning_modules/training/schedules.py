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
from typing import Callable

import torch
from lightning.pytorch.callbacks import Timer


def time_budget(trainer) -> Timer | None:
    """The ``Timer`` Lightning adds for ``max_time`` (``None`` when the run has no time limit)."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    return timer if timer is not None and timer.time_remaining() is not None else None


class RunLengthSchedule:
    """Linear warm-up, then a cosine decay over the rest of the run, as a multiplier of the
    optimizer's ``lr`` (nnU-Net's SGD with poly decay was screened against it:
    ``benchmarks/DECISIONS.md``; ``lr_schedule: null`` gives a constant rate).

    Args:
        warmup_fraction: share of the run spent raising the rate linearly from ~0 to ``lr``.
        final_fraction: the rate at the end of the run, as a fraction of ``lr``.
    """

    def __init__(self, warmup_fraction: float = 0.0, final_fraction: float = 0.0):
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if not 0 <= final_fraction <= 1:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction}")
        self.warmup_fraction = warmup_fraction
        self.final_fraction = final_fraction

    def factor(self, progress: float) -> float:
        """The multiplier of ``lr`` at ``progress`` (0: start of the run, 1: its end)."""
        progress = min(max(progress, 0.0), 1.0)
        if progress < self.warmup_fraction:
            # never exactly 0: the first steps of a warm-up still move the weights a little
            return max(progress / self.warmup_fraction, 1e-3)
        rest = (progress - self.warmup_fraction) / (1.0 - self.warmup_fraction)
        return self.final_fraction + (1.0 - self.final_fraction) * 0.5 * (1.0 + math.cos(math.pi * rest))

    def build(self, optimizer: torch.optim.Optimizer, progress: Callable[[int], float]) -> dict:
        """Lightning's scheduler config: ``LambdaLR`` stepped after every optimizer step, where
        ``progress(step)`` says how far through the run that step is."""
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.factor(progress(step)))
        return {"scheduler": scheduler, "interval": "step", "frequency": 1}
