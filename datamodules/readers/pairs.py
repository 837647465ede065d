"""Shared matching of image files to label files by case name, used by the flat layouts."""

from __future__ import annotations

from pathlib import Path

from datamodules.case import Case, DataSource


def existing_root(source: DataSource) -> Path:
    root = Path(source.root).expanduser()
    if not root.is_dir():
        raise ValueError(f"source root {str(root)!r} ({source.layout}, {source.task}/{source.center}) is not a folder")
    return root


def paired_cases(source: DataSource, image_suffix: str, label_suffix: str) -> list[Case]:
    """Cases from ``<case><image_suffix>`` files and their ``<case><label_suffix>`` anywhere below root.

    The image and label of a case may sit in one folder (``CaseNNNN/CaseNNNN_LGE.nii.gz``) or in
    sibling folders (MM-WHS and MyoPS releases keep labels apart), so labels are indexed by name.
    """
    root = existing_root(source)
    labels = {p.name[: -len(label_suffix)]: p for p in sorted(root.rglob(f"*{label_suffix}"))}
    cases = []
    for image in sorted(root.rglob(f"*{image_suffix}")):
        case_id = image.name[: -len(image_suffix)]
        label = labels.get(case_id)
        cases.append(Case(case_id=case_id, task=source.task, center=source.center, modality=source.modality,
                          layout=source.layout, image=str(image), label=None if label is None else str(label),
                          split=source.split, weight=source.weight))
    if not cases:
        raise ValueError(f"source root {str(root)!r} holds no '*{image_suffix}' image ({source.layout} layout)")
    return cases
