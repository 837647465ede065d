"""Reporting as Lightning callbacks: the module scores cases and logs the metrics that checkpoints
and sweeps select on; these write what people read (per-case CSVs, leaderboards, W&B tables and
overlay pictures), so the module stays training and inference."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from datamodules.geometry import spacing_of
from lightning_modules.evaluation import aggregate
from lightning_modules.evaluation.overlays import overlay_panel
from lightning_modules.evaluation.results_io import unused_path, write_csv_atomic


def wandb_logger(trainer) -> WandbLogger | None:
    """The run's W&B logger, if it has one."""
    return next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)


class ResultTables(Callback):
    """After ``test``: ``test_cases.csv`` (one row per case and structure), ``test_centers.csv``
    and ``leaderboard.csv`` (task x ID/OOD) in the run folder, the leaderboard printed, and the
    tables (plus the CSV as a run file) in W&B; after each validation, ``val_cases/step-<N>.csv``
    in the run folder (one new file per validation, never overwritten, so a run's history
    stays readable without W&B) and the per-case table in W&B. It reads the rows the module
    gathered over every DDP rank (``module.results``).

    Args:
        leaderboard_path: after ``test``, also write the leaderboard here (the run folder always
            gets its own copy).
    """

    def __init__(self, leaderboard_path: str | None = None):
        self.leaderboard_path = leaderboard_path

    def on_validation_end(self, trainer, pl_module) -> None:
        frame = getattr(pl_module, "results", None)
        if trainer.sanity_checking or frame is None or frame.empty:
            return
        # log_dir is a collective under DDP (rank 0 broadcasts it): every rank must ask
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        # a `validate` of a checkpoint runs at step 0, and may be repeated into the same run folder
        path = unused_path(run_dir / "val_cases" / f"step-{trainer.global_step}.csv")
        write_csv_atomic(frame.assign(epoch=trainer.current_epoch, step=trainer.global_step), path)
        logger = wandb_logger(trainer)
        if logger is not None:
            logger.log_table("val/cases", dataframe=frame, step=trainer.global_step)

    def on_test_end(self, trainer, pl_module) -> None:
        frame = getattr(pl_module, "results", None)
        # log_dir is a collective under DDP (rank 0 broadcasts it): every rank must ask
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if frame is None or frame.empty or not trainer.is_global_zero:
            return
        board = aggregate.leaderboard(frame)
        write_csv_atomic(frame, run_dir / "test_cases.csv")
        write_csv_atomic(aggregate.center_table(frame), run_dir / "test_centers.csv")
        write_csv_atomic(board, run_dir / "leaderboard.csv")
        if self.leaderboard_path:
            write_csv_atomic(board, self.leaderboard_path)
        logger = wandb_logger(trainer)
        if logger is not None:
            logger.log_table("test/cases", dataframe=frame)
            logger.log_table("test/leaderboard", dataframe=board)
            # the notebook reads per-case rows back from a W&B run's files
            logger.experiment.save(str(run_dir / "test_cases.csv"), base_path=str(run_dir), policy="now")
        with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
            rank_zero_info(f"\nCARE leaderboard (mean over cases of the mean over structures):\n{board.to_string(index=False)}\n"
                           f"per-case rows: {run_dir / 'test_cases.csv'}")


class WandbOverlays(Callback):
    """Image | reference | prediction pictures of the first ``cases`` validation cases (of rank
    0), logged to W&B after each validation when the run has a W&B logger.

    Args:
        cases: validation cases drawn per validation (0: none).
    """

    def __init__(self, cases: int = 4):
        if cases < 0:
            raise ValueError(f"cases must be >= 0, got {cases}")
        self.cases = cases
        self._panels: list[tuple[np.ndarray, str]] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._panels = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx >= self.cases or wandb_logger(trainer) is None or not trainer.is_global_zero:
            return
        image = np.asanyarray(nib.load(batch["image_path"]).dataobj)
        panel = overlay_panel(image, batch["reference"], outputs["masks"], spacing_of(batch["original_affine"]))
        names = ", ".join(f"{i + 1}={s}" for i, s in enumerate(batch["structures"]))
        self._panels.append((panel, f"{batch['uid']} ({batch['role']}): image | reference | prediction; {names}"))

    def on_validation_end(self, trainer, pl_module) -> None:
        logger = wandb_logger(trainer)
        if self._panels and logger is not None and not trainer.sanity_checking and trainer.is_global_zero:
            panels, captions = zip(*self._panels)
            logger.log_image("val/overlays", list(panels), step=trainer.global_step, caption=list(captions))
        self._panels = []
