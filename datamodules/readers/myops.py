"""MyoPS 2020 layout: ``<case>_<SEQ>.nii.gz`` (SEQ = LGE, C0, T2) with ``<case>_gd.nii.gz``.

Works for the flat challenge release and for one folder per case (``CaseNNNN/CaseNNNN_LGE.nii.gz``).
"""

from __future__ import annotations

from datamodules.case import Case, DataSource
from datamodules.readers.pairs import paired_cases

LABEL_SUFFIX = "_gd.nii.gz"


def read_myops(source: DataSource) -> list[Case]:
    sequence = source.sequence or source.modality
    return paired_cases(source, f"_{sequence}.nii.gz", LABEL_SUFFIX)
