"""LAScarQS 2022 layout: one folder per case with ``enhanced.nii.gz`` and ``atriumSegImgMO.nii.gz``."""

from __future__ import annotations

from datamodules.case import Case, DataSource
from datamodules.readers.pairs import existing_root

IMAGE_NAME = "enhanced.nii.gz"
LABEL_NAME = "atriumSegImgMO.nii.gz"


def read_lascarqs(source: DataSource) -> list[Case]:
    root = existing_root(source)
    cases = []
    for image in sorted(root.rglob(IMAGE_NAME)):
        label = image.with_name(LABEL_NAME)
        cases.append(Case(case_id=image.parent.name, task=source.task, center=source.center,
                          modality=source.modality, layout=source.layout, image=str(image),
                          label=str(label) if label.exists() else None, split=source.split,
                          weight=source.weight))
    if not cases:
        raise ValueError(f"source root {str(root)!r} holds no '<case>/{IMAGE_NAME}' (lascarqs layout)")
    return cases
