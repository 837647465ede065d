"""Images to predict: read from paths or experiment sources, preprocessed one at a time."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from torch.utils.data import Dataset

import vocabulary
from datamodules.case import Case
from datamodules.files import NIFTI_NAME, nifti_stem
from datamodules.preprocessing import Preprocessing
from datamodules.readers.lascarqs import IMAGE_NAME as LASCARQS_IMAGE
from datamodules.volumes import volume_item

# image-file endings of the CARE releases, dropped to name a case from its file
_IMAGE_SUFFIX = re.compile(r"_(image|LGE|C0|T2|DE)$")


def case_id_of(path: Path) -> str:
    """A case name from an image file: ``Case3006_LGE.nii.gz`` -> ``Case3006``,
    ``<case>/enhanced.nii.gz`` -> ``<case>``, ``ct_1001_image.nii.gz`` -> ``ct_1001``."""
    if path.name == LASCARQS_IMAGE:
        return path.parent.name
    stem = nifti_stem(path)
    return _IMAGE_SUFFIX.sub("", stem)


def image_files(root: Path, pattern: str) -> list[Path]:
    """NIfTI images in a folder matching ``pattern`` (recursively), or the file itself."""
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob(pattern) if p.is_file() and NIFTI_NAME.search(p.name))
    if not files:
        raise ValueError(f"{root} holds no NIfTI image matching {pattern!r}")
    return files


class PredictionDataset(Dataset):
    """One item per image, preprocessed when asked for (prediction visits each image once, so
    nothing is cached or held in memory beyond the current volume).

    Args:
        cases: images to predict (their ``task`` fixes the grid spacing, ``modality`` the
            intensity normalisation); labels, if any, are ignored.
        preprocessing: the experiment's preprocessing.
        structures: structure keys to prompt (canonical phrasing in each case's modality);
            ``None`` with ``prompts``.
        prompts: free-text prompts, used as given for every case.
    """

    def __init__(self, cases: list[Case], preprocessing: Preprocessing, structures: list[str] | None = None,
                 prompts: list[str] | None = None):
        if (structures is None) == (prompts is None) or not (structures or prompts):
            raise ValueError("give either structures or prompts (a non-empty list)")
        unknown = [key for key in structures or [] if key not in vocabulary.STRUCTURES]
        if unknown:
            raise ValueError(f"unknown structures {unknown}; known: {sorted(vocabulary.STRUCTURES)}")
        self.cases = cases
        self.preprocessing = preprocessing
        self.structures = structures
        self.prompts = prompts

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict:
        case = self.cases[index]
        unlabelled = dataclasses.replace(case, label=None)  # a prediction never reads a label
        prepared = self.preprocessing(unlabelled, role="predict")
        if self.structures is not None:
            fields = {"structures": list(self.structures),
                      "prompts": [vocabulary.prompt(key, case.modality) for key in self.structures]}
        else:
            fields = {"structures": [None] * len(self.prompts), "prompts": list(self.prompts)}
        fields["annotated"] = [False] * len(fields["prompts"])
        return volume_item(prepared, fields, None)
