"""MM-WHS 2017 layout: ``<case>_image.nii.gz`` with ``<case>_label.nii.gz`` (codes 205...850)."""

from __future__ import annotations

from datamodules.case import Case, DataSource
from datamodules.readers.pairs import paired_cases

IMAGE_SUFFIX, LABEL_SUFFIX = "_image.nii.gz", "_label.nii.gz"


def read_mmwhs(source: DataSource) -> list[Case]:
    return paired_cases(source, IMAGE_SUFFIX, LABEL_SUFFIX)
