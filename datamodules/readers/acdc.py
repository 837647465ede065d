"""ACDC release layout: ``patientNNN/patientNNN_frameNN.nii.gz`` with ``patientNNN_frameNN_gt.nii.gz``.

The release names frames by their number in the cine (``frame01``, ``frame12``); ``Info.cfg``
beside them says which is end-diastole (``ED: 1``) and end-systole (``ES: 12``). Without it,
a patient's two frames are ED and ES in number order, as the release always stores ED first.
The ``patientNNN_4d.nii.gz`` cine is not a frame and is skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

from datamodules.case import Case, DataSource
from datamodules.readers.pairs import existing_root

LABEL_SUFFIX = "_gt.nii.gz"
FRAME_NAME = re.compile(r"^(?P<patient>.+)_frame(?P<frame>\d+)\.nii\.gz$")


def label_file(case_id: str) -> str:
    """Where the release keeps a frame's label, relative to the release folder."""
    return f"{case_id.rsplit('_frame', 1)[0]}/{case_id}{LABEL_SUFFIX}"


def _phases(folder: Path, frames: list[int]) -> dict[int, str]:
    """Frame number -> ``ED``/``ES`` from ``Info.cfg``, else by number order for two frames."""
    info = folder / "Info.cfg"
    if info.is_file():
        fields = dict(line.split(":", 1) for line in info.read_text().splitlines() if ":" in line)
        try:
            return {int(fields[phase]): phase for phase in ("ED", "ES") if phase in fields}
        except ValueError as err:
            raise ValueError(f"{info}: ED/ES are not frame numbers ({err})") from None
    return dict(zip(sorted(frames), ("ED", "ES"))) if len(frames) == 2 else {}


def read_acdc(source: DataSource) -> list[Case]:
    root = existing_root(source)
    frames: dict[Path, list[tuple[int, Path, str]]] = {}
    for image in sorted(root.rglob("*_frame*.nii.gz")):
        match = FRAME_NAME.match(image.name)  # labels (``_frame01_gt``) and the ``_4d`` cine do not match
        if match:
            frames.setdefault(image.parent, []).append((int(match["frame"]), image, match["patient"]))
    cases = []
    for folder, found in sorted(frames.items()):
        phases = _phases(folder, [number for number, _, _ in found])
        for number, image, patient in sorted(found):
            case_id = image.name[: -len(".nii.gz")]
            label = image.with_name(f"{case_id}{LABEL_SUFFIX}")
            cases.append(Case(case_id=case_id, task=source.task, center=source.center, modality=source.modality,
                              layout=source.layout, image=str(image), label=str(label) if label.exists() else None,
                              split=source.split, weight=source.weight, subject=patient, phase=phases.get(number)))
    if not cases:
        raise ValueError(f"source root {str(root)!r} holds no 'patientNNN/patientNNN_frameNN.nii.gz' (acdc layout)")
    return cases
