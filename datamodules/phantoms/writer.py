"""Write a whole phantom benchmark to disk in the real layouts, atomically and deterministically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from datamodules.phantoms.centers import CENTERS, CenterProfile
from datamodules.phantoms.render import render_case
from datamodules.progress import reported

LABEL_DTYPES = {"lascarqs": np.uint8, "mmwhs": np.int16, "myops": np.int16}  # never uint8 for 500+ codes


def _save(array: np.ndarray, affine: np.ndarray, path: Path, qform_only: bool) -> None:
    image = nib.Nifti1Image(array, affine)
    if qform_only:  # as the real MyoPS files: scanner geometry in the qform, sform unset
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=0)
    else:
        image.set_sform(affine, code=2)
        image.set_qform(affine, code=1)
    nib.save(image, path)


def case_paths(profile: CenterProfile, folder: Path, case_id: str) -> tuple[Path, Path]:
    """Image and label path of a case in its center's real layout."""
    if profile.layout == "lascarqs":
        return folder / case_id / "enhanced.nii.gz", folder / case_id / "atriumSegImgMO.nii.gz"
    if profile.layout == "mmwhs":
        return folder / f"{case_id}_image.nii.gz", folder / f"{case_id}_label.nii.gz"
    return folder / f"{case_id}_LGE.nii.gz", folder / f"{case_id}_gd.nii.gz"


def write_phantoms(out: str | os.PathLike, seed: int = 0, cases_per_center: int = 8, eval_cases: int = 2,
                   val_cases: int | None = None) -> Path:
    """Write ``<out>/<task>/<center>/<split>/...`` for every phantom center.

    ID centers get ``cases_per_center`` training cases; every center gets ``eval_cases`` test
    cases and ``val_cases`` (default ``eval_cases``) validation cases. Every case has its own
    random stream, so changing a count adds or drops cases without changing the others. The folder is built beside ``out`` and renamed into place, so a failed run leaves
    nothing half-written, and an existing ``out`` is never touched.

    Raises:
        FileExistsError: when ``out`` already exists.
        ValueError: for non-positive case counts.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; phantoms are never written over existing files")
    val_cases = eval_cases if val_cases is None else val_cases
    if cases_per_center < 1 or eval_cases < 1 or val_cases < 1:
        raise ValueError(f"cases_per_center, eval_cases and val_cases must be >= 1, "
                         f"got {cases_per_center}, {eval_cases}, {val_cases}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        description = {"seed": seed, "cases_per_center": cases_per_center, "eval_cases": eval_cases, "val_cases": val_cases,
                       "centers": []}
        for profile in reported(CENTERS, len(CENTERS), "writing phantom centers"):
            splits = {"val": val_cases, "test": eval_cases}
            if not profile.held_out:
                splits = {"train": cases_per_center, **splits}
            for split, count in splits.items():
                folder = staging / profile.task / profile.name / split
                for index in range(count):
                    # one stream per (seed, center, split, case): adding a center changes no other case
                    rng = np.random.default_rng([seed, zlib.crc32(profile.name.encode()), zlib.crc32(split.encode()), index])
                    image, label, affine = render_case(profile, rng)
                    image_path, label_path = case_paths(profile, folder, f"{profile.name}_{split}_{index:03d}")
                    image_path.parent.mkdir(parents=True, exist_ok=True)
                    qform_only = profile.short_axis
                    _save(image, affine, image_path, qform_only)
                    _save(label.astype(LABEL_DTYPES[profile.layout]), affine, label_path, qform_only)
            description["centers"].append({"name": profile.name, "task": profile.task, "modality": profile.modality,
                                           "layout": profile.layout, "role": "OOD" if profile.held_out else "ID",
                                           "splits": splits})
        (staging / "phantoms.json").write_text(json.dumps(description, indent=2))
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
