"""Whole volumes for validation, test and prediction, with the reference on the file's own grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from torch.utils.data import Dataset

import vocabulary
from datamodules.preprocessing import PreprocessedCase
from datamodules.prompts import prompt_fields


class VolumeDataset(Dataset):
    """One item per case: the preprocessed volume plus what scoring and export need.

    The reference masks are read from the original label file, so metrics are computed on the
    original grid and spacing, never on the resampled training grid.

    Args:
        cases: preprocessed cases.
    """

    def __init__(self, cases: list[PreprocessedCase]):
        self.cases = cases

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict:
        case = self.cases[index]
        fields = prompt_fields(case.case)
        reference = None
        if case.case.label is not None:
            # asanyarray keeps the stored dtype: MyoPS codes (500, 2221) must not pass through uint8
            codes = np.asanyarray(nib.load(case.case.label).dataobj)
            known = [s for s, a in zip(fields["structures"], fields["annotated"]) if a]
            masks = vocabulary.binary_masks(codes, case.case.layout, known)
            reference = np.zeros((len(fields["structures"]), *codes.shape), dtype=bool)
            reference[np.asarray(fields["annotated"])] = masks
        return volume_item(case, fields, reference)


def volume_item(case: PreprocessedCase, fields: dict, reference: np.ndarray | None) -> dict:
    """What inference, scoring and export read of one whole volume (``fields``: structures,
    prompts and annotation flags; ``reference``: masks on the file's grid, or ``None``)."""
    return {
        "image": case.image, "reference": reference, **fields,
        "uid": case.case.uid, "case_id": case.case.case_id, "subject": case.case.person, "phase": case.case.phase,
        "task": case.case.task, "center": case.case.center,
        "modality": case.case.modality, "layout": case.case.layout, "role": case.role,
        "slice_axis": case.slice_axis, "affine": case.affine,
        "original_shape": case.original_shape, "original_affine": case.original_affine,
        "image_path": case.case.image, "label_path": case.case.label,
    }
