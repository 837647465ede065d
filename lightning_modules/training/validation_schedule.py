"""Validation every N epochs and always once at the end of training, however the run length is set."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from lightning_modules.training.schedules import time_budget


class ValidationSchedule(Callback):
    """Validates every ``every_n_epochs`` epochs and after the last training step.

    ``trainer.check_val_every_n_epoch: ${trainer.max_epochs}`` means "at the end" only while
    nobody sets ``max_steps`` or ``max_time``: a run stopped by either ends between two
    validations and its ``best.ckpt`` never sees the final weights. This callback knows when
    the run ends (last epoch, last step, time used up) and asks Lightning for a validation
    there, through ``check_val_every_n_epoch`` and ``should_stop``, which Lightning's loop
    reads after every batch.

    Args:
        every_n_epochs: validate after every N-th epoch as well; ``None``: only at the end.
    """

    def __init__(self, every_n_epochs: int | None = 10):
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1 or null, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and trainer.check_val_every_n_epoch != 1:
            raise ValueError(f"trainer.check_val_every_n_epoch is {trainer.check_val_every_n_epoch}, and "
                             f"ValidationSchedule(every_n_epochs={self.every_n_epochs}) sets the validation "
                             "frequency too: set it once, on the callback (leave the trainer's at 1)")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        last = 0 < trainer.max_epochs <= epoch if trainer.max_epochs is not None else False
        periodic = self.every_n_epochs is not None and epoch % self.every_n_epochs == 0
        # Lightning validates after epoch e when e % check_val_every_n_epoch == 0
        trainer.check_val_every_n_epoch = 1 if last or periodic else epoch + 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        ends = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        timer = time_budget(trainer)
        if timer is not None:
            # the clocks of DDP ranks differ: rank 0 decides for all, as Lightning's Timer does
            ends = ends or bool(trainer.strategy.broadcast(timer.time_remaining() <= 0))
        if ends:
            trainer.check_val_every_n_epoch = 1
            trainer.should_stop = True  # Lightning then validates after this batch
