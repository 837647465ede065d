"""Progress of fit, validate, test and predict: Lightning's ``RichProgressBar`` on a terminal,
plain periodic lines in logs (CI, SLURM), so no long run is silent either way."""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from datamodules.progress import on_terminal


def _total(batches) -> int | float:
    """Batches of a stage over all its dataloaders (Lightning keeps one count per loader)."""
    return sum(batches) if isinstance(batches, (list, tuple)) else batches


class LogLineProgress(ProgressBar):
    """A progress "bar" for logs: one line per stage start and then at most one every
    ``every_seconds`` (epoch, batch, loss, elapsed time), on the first process only.

    Lightning's own bars redraw one line in place, which a log file records as thousands of
    lines or none at all; this writes what a researcher tailing a SLURM log needs.

    Args:
        every_seconds: the longest silence between two lines while a stage runs.
    """

    def __init__(self, every_seconds: float = 30.0):
        super().__init__()
        if every_seconds <= 0:
            raise ValueError(f"every_seconds must be positive, got {every_seconds}")
        self.every_seconds = every_seconds
        self._enabled = True
        self._start = self._last = 0.0

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def _line(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self._enabled and (force or now - self._last >= self.every_seconds):
            print(f"[{now - self._start:7.0f} s] {text}", file=sys.stdout, flush=True)
            self._last = now

    def _stage_start(self, stage: str, total) -> None:
        self._start = self._start or time.monotonic()
        self._line(f"{stage}: {total} batches", force=True)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()
        steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self._line(f"fit: up to {trainer.max_epochs} epochs" + (f", {steps} steps" if steps else ""), force=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        self._line(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} batch {batch_idx + 1}/"
                   f"{self.total_train_batches} (step {trainer.global_step}) {shown}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._line(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} done (step {trainer.global_step})",
                   force=True)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._stage_start("validation", _total(trainer.num_val_batches))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._line(f"validation {batch_idx + 1}/{_total(trainer.num_val_batches)}")

    def on_test_start(self, trainer, pl_module) -> None:
        self._stage_start("test", _total(trainer.num_test_batches))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        total = _total(trainer.num_test_batches)
        self._line(f"test {batch_idx + 1}/{total}", force=batch_idx + 1 == total)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._stage_start("predict", _total(trainer.num_predict_batches))

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        total = _total(trainer.num_predict_batches)
        self._line(f"predict {batch_idx + 1}/{total}", force=batch_idx + 1 == total)


def progress_bar(every_seconds: float = 30.0) -> ProgressBar:
    """Lightning's rich bar on an interactive terminal, log lines otherwise."""
    return RichProgressBar() if on_terminal() else LogLineProgress(every_seconds)
