"""Worst-case pictures: the lowest-Dice test cases of each group kept, worst first, written as PNG."""

from types import SimpleNamespace

import nibabel as nib
import numpy as np
from PIL import Image

from lightning_modules.evaluation.worst_cases import WorstCaseOverlays


def test_the_worst_cases_of_each_group_are_drawn_worst_first(tmp_path):
    image = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(8, 8, 3).astype(np.float32), np.eye(4)), image)
    reference = np.zeros((1, 8, 8, 3), bool)
    reference[0, 2:6, 2:6] = True
    trainer = SimpleNamespace(log_dir=str(tmp_path / "run"), default_root_dir=str(tmp_path), is_global_zero=True,
                              loggers=[])
    callback = WorstCaseOverlays(cases=2)
    callback.on_test_epoch_start(trainer, None)
    for index, rows in enumerate((4, 0, 2, 3)):  # predictions of 4, 0, 2 and 3 of the reference's 4 rows
        predicted = np.zeros_like(reference)
        predicted[0, 2:2 + rows, 2:6] = True
        dice = 2 * rows / (4 + rows)  # as test_step scores it
        batch = {"reference": reference, "annotated": [True], "task": "acdc", "center": "dijon", "modality": "bSSFP",
                 "image_path": str(image), "original_affine": np.eye(4), "structures": ["lv"], "case_id": f"case{index}"}
        callback.on_test_batch_end(trainer, None, {"masks": predicted, "dice": dice}, batch, index)
    callback.on_test_end(trainer, None)
    pictures = sorted((tmp_path / "run" / "worst_cases" / "acdc_dijon_bSSFP").glob("*.png"))
    assert [p.name for p in pictures] == ["1_case1.png", "2_case2.png"]  # Dice 0, then 2 of 4 rows
    assert Image.open(pictures[0]).size == (3 * 8, 8)  # image | reference | prediction
