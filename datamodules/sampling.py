"""Which case each training patch comes from: weights over tasks, centers and modalities."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

from datamodules.case import Case

TaskSampling = Literal["uniform", "proportional", "temperature"]


def _mass(count: int, mode: TaskSampling, temperature: float) -> float:
    if mode == "uniform":
        return 1.0
    if mode == "proportional":
        return float(count)
    return float(count) ** (1.0 / temperature)


def case_weights(cases: list[Case], mode: TaskSampling = "uniform", temperature: float = 2.0,
                 task_weights: dict[str, float] | None = None) -> np.ndarray:
    """Probability of drawing each case.

    Two levels share the rule ``mode``: tasks, then (center, modality) groups inside a task.
    ``uniform`` gives every task (group) the same share, ``proportional`` a share by case count,
    ``temperature`` a share by count ** (1 / temperature) (between the two). ``task_weights``
    multiplies a task's share (a task with seven structures may deserve more patches than one
    with one). Source ``weight`` acts at both lower levels: a group's share is multiplied by the
    mean weight of its cases (a second sequence of a center can take a third of that center's
    patches instead of a half), and inside a group cases are drawn in proportion to it.
    """
    if mode not in ("uniform", "proportional", "temperature"):
        raise ValueError(f"task_sampling must be uniform, proportional or temperature, got {mode!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not cases:
        raise ValueError("no training cases to sample from")
    task_weights = dict(task_weights or {})
    if any(w <= 0 for w in task_weights.values()):
        raise ValueError(f"task_weights must be positive, got {task_weights}")
    tasks = Counter(c.task for c in cases)
    groups = Counter((c.task, c.center, c.modality) for c in cases)
    task_mass = {t: _mass(n, mode, temperature) * task_weights.get(t, 1.0) for t, n in tasks.items()}
    case_total = Counter()
    for c in cases:
        case_total[(c.task, c.center, c.modality)] += c.weight
    group_mass = {g: _mass(n, mode, temperature) * case_total[g] / n for g, n in groups.items()}
    group_total = Counter()
    for g, m in group_mass.items():
        group_total[g[0]] += m
    weights = np.array([
        task_mass[c.task] / sum(task_mass.values())
        * group_mass[(c.task, c.center, c.modality)] / group_total[c.task]
        * c.weight / case_total[(c.task, c.center, c.modality)]
        for c in cases
    ])
    return weights / weights.sum()


class PatchDraw(NamedTuple):
    """One training patch to make: the case it comes from and the seed of every random choice
    in it (position, augmentation, prompt phrasing)."""

    case: int
    seed: int


class WeightedCaseSampler(Sampler[PatchDraw]):
    """Draws ``num_samples`` patches per epoch: cases with replacement, each with its own seed.

    The draw of epoch ``e`` depends on ``(seed, e)`` only, and a patch on its ``PatchDraw`` only,
    so any position of any epoch can be re-made exactly: resuming mid-epoch, or running with
    more loader workers, gives the same patches. The epoch comes from ``set_epoch``, which
    Lightning calls before every epoch (through its ``DistributedSamplerWrapper`` too, which
    splits one epoch's draw between ranks under DDP, so each rank trains on different patches).

    Args:
        weights: probability of each case (see ``case_weights``).
        num_samples: draws per epoch (before splitting between ranks).
        seed: seed of the draws.
    """

    def __init__(self, weights: np.ndarray, num_samples: int, seed: int = 0):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[PatchDraw]:
        # SeedSequence mixes (seed, epoch) so that seed 1 does not replay seed 0 one epoch later
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state))
        cases = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator)
        return iter([PatchDraw(c, s) for c, s in zip(cases.tolist(), seeds.tolist())])

    def __len__(self) -> int:
        return self.num_samples
