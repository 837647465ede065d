"""Writes each predicted case as it comes: a label map in the task's codes on the input's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_modules.inference.label_maps import compose_prompt_map
from lightning_modules.inference.nifti_export import write_like


class LabelMapWriter(BasePredictionWriter):
    """Lightning prediction writer (one file per case, written as soon as the case is done, so
    a long run keeps what it finished and never holds all predictions in memory).

    Prompts that are a task's structures are written in that task's own label codes (MyoPS:
    500 LV, 200 myocardium, 1220 edema and 2221 scar over it; MM-WHS: 205...850; LA: 255);
    free-text prompts as codes 1..P in prompt order.

    Args:
        outputs: case uid -> label file to write (checked for clashes before the run starts).
        probabilities: also write the per-prompt probabilities as one 4D float32 image
            (prompts on the last axis) next to each label file.
    """

    def __init__(self, outputs: dict[str, Path], probabilities: bool = False):
        super().__init__(write_interval="batch")
        self.outputs = outputs
        self.probabilities = probabilities

    @staticmethod
    def probability_path(label_path: Path) -> Path:
        name = label_path.name.removesuffix(".nii.gz").removesuffix(".nii")
        return label_path.with_name(f"{name}_probabilities.nii.gz")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        probabilities = prediction["probabilities"].float().numpy()
        # the module made the label map in the task's codes (what `test` scores); it leaves
        # free-text prompts, which have no codes, to be numbered here
        label = prediction["label"]
        if label is None:
            label = compose_prompt_map(prediction["masks"], probabilities)
        # files that existed were refused before the run (unless --overwrite); a rerun of the
        # same case within this run (DDP padding) replaces its own file
        path = self.outputs[prediction["uid"]]
        write_like(label, prediction["image_path"], path, overwrite=True)
        if self.probabilities:
            maps = np.moveaxis(probabilities, 0, -1).astype(np.float32)
            write_like(maps, prediction["image_path"], self.probability_path(path), overwrite=True)
