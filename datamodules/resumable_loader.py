"""A training DataLoader that Lightning checkpoints mid-epoch and resumes where it stopped.

Lightning saves the state of any train loader with ``state_dict``/``load_state_dict`` in its
checkpoints and, on resume, expects the loader to hand out only the rest of the epoch. PyTorch's
DataLoader has neither method, and torchdata's ``StatefulDataLoader`` would be one more
dependency that replays the skipped batches through the workers (every skipped 3D patch sampled
and augmented for nothing). Here a patch is a pure function of its place in the epoch's draw
(``sampling.PatchDraw``), so resuming is leaving indices out, which costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, islice

from torch.utils.data import DataLoader, Sampler


class _WithoutFirst(Sampler):
    """``sampler`` less its first ``count`` indices."""

    def __init__(self, sampler: Sampler, count: int):
        self.sampler, self.count = sampler, count

    def __iter__(self) -> Iterator:
        return islice(iter(self.sampler), self.count, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.count, 0)


class ResumableDataLoader(DataLoader):
    """``DataLoader`` with Lightning's ``state_dict``/``load_state_dict`` interface.

    Its state is the epoch of the draw in progress and how many batches of it the training loop
    received (counted here, in the main process, so batches that workers prefetched but the loop
    never saw do not count). After ``load_state_dict``, the next iteration of that same epoch
    starts after those batches; an iteration of any other epoch starts at its beginning.

    Build it like a DataLoader, with ``sampler``, ``batch_size`` and ``drop_last``. Under DDP,
    Lightning re-creates it with its distributed wrapper as the sampler; the indices left out are
    then the rank's own, and every rank has handed out as many batches as rank 0, whose count the
    checkpoint holds.
    """

    _position: tuple[int, int] | None = None  # (epoch, batches handed out) of the iteration in progress
    _resume_at: tuple[int, int] | None = None

    def state_dict(self) -> dict:
        if self._position is None:
            return {}
        epoch, served = self._position
        return {"epoch": epoch, "batches_served": served}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._resume_at = (int(state["epoch"]), int(state["batches_served"]))

    def __iter__(self) -> Iterator:
        # a generator: nothing (the workers' prefetch included) runs before the loop asks for the
        # first batch, which is after Lightning has called set_epoch on the sampler
        batch_sampler = self.batch_sampler
        if batch_sampler is None:
            raise TypeError("ResumableDataLoader needs batches (batch_size >= 1), not single samples")
        indices = batch_sampler.sampler
        epoch, skip = int(getattr(indices, "epoch", 0)), 0
        if self._resume_at is not None:
            resume_epoch, served = self._resume_at
            self._resume_at = None
            if resume_epoch == epoch and served < len(self):
                skip = served
        self._position = (epoch, skip)
        if skip:
            # the batch sampler reads its sampler when its own iteration starts: at the first
            # batch without workers, while the iterator is built with them. Both are over once
            # the first batch has arrived, and the sampler is given back then
            batch_sampler.sampler = _WithoutFirst(indices, skip * batch_sampler.batch_size)
        try:
            batches = super().__iter__()
            first = next(batches, None)
        finally:
            batch_sampler.sampler = indices
        if first is None:
            return
        for served, batch in enumerate(chain([first], batches), start=skip + 1):
            self._position = (epoch, served)
            yield batch
