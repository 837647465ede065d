"""Where the model fails, shown: after ``test``, image | reference | prediction pictures of the
cases with the lowest mean Dice, per task, centre and modality, in the run folder and in W&B."""

from __future__ import annotations

import heapq
from pathlib import Path

import nibabel as nib
import numpy as np
from lightning.pytorch.callbacks import Callback
from PIL import Image

from datamodules.files import write_atomic
from datamodules.geometry import spacing_of
from lightning_modules.evaluation.overlays import overlay_panel
from lightning_modules.evaluation.reporting import wandb_logger


class WorstCaseOverlays(Callback):
    """Pictures of the ``cases`` worst test cases of each task x center x modality (lowest mean
    Dice over the annotated structures, as the module scored them: ``test_step``'s ``dice``), drawn on the slice where the reference is largest:
    ``worst_cases/<task>_<center>_<modality>/<rank>_<case>.png`` in the run folder, and the
    W&B table ``test/worst_cases`` when the run has a W&B logger. Only rank 0's cases under DDP.

    Args:
        cases: pictures kept per task x center x modality (0: none).
    """

    def __init__(self, cases: int = 3):
        if cases < 0:
            raise ValueError(f"cases must be >= 0, got {cases}")
        self.cases = cases
        self._worst: dict[tuple[str, str, str], list] = {}

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._worst = {}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.cases or not outputs or batch.get("reference") is None or not trainer.is_global_zero:
            return
        dice = outputs["dice"]
        group = self._worst.setdefault((batch["task"], batch["center"], batch["modality"]), [])
        if len(group) == self.cases and -dice <= group[0][0]:
            return  # better than every case kept
        # drawn now (a small picture), so no volume is held until the end
        image = np.asanyarray(nib.load(batch["image_path"]).dataobj)
        panel = overlay_panel(image, np.asarray(batch["reference"]), outputs["masks"], spacing_of(batch["original_affine"]))
        names = ", ".join(f"{i + 1}={s}" for i, s in enumerate(batch["structures"]))
        item = (-dice, batch_idx, batch["case_id"], panel, names)  # a heap on -dice: its top is the best kept
        (heapq.heappush if len(group) < self.cases else heapq.heapreplace)(group, item)

    def on_test_end(self, trainer, pl_module) -> None:
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if not self._worst or not trainer.is_global_zero:
            return
        rows = []
        for (task, center, modality), group in sorted(self._worst.items()):
            for rank, (negative, _, case_id, panel, names) in enumerate(sorted(group, reverse=True), start=1):
                path = run_dir / "worst_cases" / f"{task}_{center}_{modality}" / f"{rank}_{case_id}.png"
                write_atomic(path, lambda stream, p=panel: Image.fromarray(p).save(stream, format="PNG"), binary=True)
                rows.append([task, center, modality, case_id, -negative, panel, names])
        logger = wandb_logger(trainer)
        if logger is not None:
            import wandb

            logger.log_table("test/worst_cases", columns=["task", "center", "modality", "case", "dice", "overlay", "structures"],
                             data=[[*row[:5], wandb.Image(row[5], caption=row[6]), row[6]] for row in rows])
        self._worst = {}
