"""Checking every file of an experiment before training: one report listing all problems.

nnU-Net's ``verify_dataset_integrity`` is the model (same checks: readable files, matching
geometry, expected label values, finite intensities), but it stops at the first failure and
knows only its own layout; this one reads the layouts through the vocabulary and collects every
problem of every case, so a broken dataset is fixed in one round.
"""

from __future__ import annotations

import dataclasses
import gzip
from dataclasses import dataclass, field
from itertools import product

import nibabel as nib
import numpy as np
import pandas as pd

import vocabulary
from datamodules.case import Case
from datamodules.geometry import spacing_of
from datamodules.progress import reported

# image and label grids may differ by this much (mm, at any corner of the volume) and still match:
# float32 headers written by different tools round the affine differently
AFFINE_TOLERANCE_MM = 0.01


@dataclass
class CaseReport:
    """What checking one case found.

    Args:
        case: the case checked.
        problems: human-readable problems, each naming the file.
        spacing: voxel size in mm of the image.
        shape: spatial shape of the image.
        codes: label values present.
        volumes_ml: structure key -> volume in ml.
        foreground_intensity: image intensities inside the annotated structures, as in the file
            (before normalisation): 0.5th and 99.5th percentile, mean and standard deviation;
            what nnU-Net's fingerprint derives CT normalisation from.
    """

    case: Case
    problems: list[str] = field(default_factory=list)
    spacing: tuple[float, ...] | None = None
    shape: tuple[int, ...] | None = None
    codes: tuple[int, ...] = ()
    volumes_ml: dict[str, float] = field(default_factory=dict)
    foreground_intensity: tuple[float, float, float, float] | None = None


def check_cases(cases: list[Case], cache=None, require_label: bool = True) -> list[CaseReport]:
    """Reports of all cases; ``cache`` (a ``CheckCache``) skips files that passed before unchanged.
    ``require_label=False`` checks images only (prediction: labels, if any, are not read)."""
    if not require_label:
        cases = [dataclasses.replace(case, label=None) for case in cases]
    if cache is None:
        return [check_case(case, require_label) for case in reported(cases, len(cases), "checking files")]
    reports = []
    for case in reported(cases, len(cases), "checking files"):
        stored = cache.load_or_check(case, lambda c: _to_dict(check_case(c, require_label)))
        reports.append(CaseReport(case=case, problems=list(stored["problems"]),
                                  spacing=None if stored["spacing"] is None else tuple(stored["spacing"]),
                                  shape=None if stored["shape"] is None else tuple(stored["shape"]),
                                  codes=tuple(stored["codes"]), volumes_ml=dict(stored["volumes_ml"]),
                                  foreground_intensity=None if stored["foreground_intensity"] is None
                                  else tuple(stored["foreground_intensity"])))
    return reports


def _to_dict(report: CaseReport) -> dict:
    return {"problems": report.problems, "spacing": report.spacing, "shape": report.shape,
            "codes": list(report.codes), "volumes_ml": report.volumes_ml,
            "foreground_intensity": report.foreground_intensity}


def _corners(shape, affine) -> np.ndarray:
    corners = np.array(list(product(*[(0, n - 1) for n in shape[:3]])), dtype=float)
    return corners @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def corner_shift_mm(shape, affine, other_affine) -> float:
    """Largest distance (mm) between where two affines put the corners of a grid of ``shape``."""
    return float(np.linalg.norm(_corners(shape, affine) - _corners(shape, other_affine), axis=1).max())


def _largest_code(layout: vocabulary.LayoutCodes) -> int:
    if layout.known_codes is None:
        return 1  # "any non-zero": a bool or uint8 file is fine
    return max(layout.known_codes)


def _dtype_problem(dtype: np.dtype, layout_key: str) -> str | None:
    largest = _largest_code(vocabulary.layout(layout_key))
    if np.issubdtype(dtype, np.integer) and np.iinfo(dtype).max < largest:
        return (f"stored as {dtype}, which cannot hold code {largest} of the {layout_key} layout "
                f"(values would wrap around); save labels as int16 or wider")
    return None


def check_case(case: Case, require_label: bool = True) -> CaseReport:
    """Read the case's image and label fully and report everything wrong with them
    (``require_label=False``: an image without label is fine, as for prediction)."""
    report = CaseReport(case)
    image, data = _load(case.image, "image", report), None
    if image is not None:
        report.shape = tuple(int(n) for n in image.shape[:3])
        report.spacing = tuple(float(s) for s in spacing_of(image.affine))
        data = _data(image, case.image, "image", report)
        if data is not None and not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            report.problems.append(f"{case.image}: image has {bad} NaN/Inf voxels")
            data = None  # no intensity statistics from it
    if case.label is None:
        if require_label:
            report.problems.append(f"{case.image}: no label file for this image")
        return report
    label = _load(case.label, "label", report)
    if label is None:
        return report
    dtype_problem = _dtype_problem(label.get_data_dtype(), case.layout)
    if dtype_problem:
        report.problems.append(f"{case.label}: label {dtype_problem}")
    if image is not None:
        if tuple(label.shape[:3]) != report.shape:
            report.problems.append(f"{case.label}: label grid {tuple(label.shape[:3])} differs from image grid "
                                   f"{report.shape} ({case.image})")
        else:
            shift = corner_shift_mm(report.shape, label.affine, image.affine)
            if shift > AFFINE_TOLERANCE_MM:
                report.problems.append(f"{case.label}: label affine differs from the image's ({case.image}) by up "
                                       f"to {shift:.3g} mm at the volume corners")
    codes = _data(label, case.label, "label", report)
    if codes is None:
        return report
    values = np.unique(codes)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        report.problems.append(f"{case.label}: label holds non-integer values {values[values != np.round(values)][:5]}")
        return report
    report.codes = tuple(int(v) for v in values)
    layout = vocabulary.layout(case.layout)
    if layout.known_codes is not None:
        unknown = sorted(set(report.codes) - layout.known_codes)
        if unknown:
            report.problems.append(f"{case.label}: label codes {unknown} are not in the {case.layout} layout "
                                   f"(known: {sorted(layout.known_codes)})")
    structures = vocabulary.annotated_structures(case.layout, case.task)
    masks = vocabulary.binary_masks(codes, case.layout, structures)
    voxel_ml = float(np.prod(report.spacing)) / 1000.0 if report.spacing else float("nan")
    report.volumes_ml = {s: float(m.sum()) * voxel_ml for s, m in zip(structures, masks)}
    if not any(m.any() for m in masks):
        report.problems.append(f"{case.label}: label contains none of task {case.task!r}'s structures "
                               f"{list(structures)} (codes found: {list(report.codes)})")
    elif data is not None and data.shape[:3] == codes.shape[:3]:
        inside = np.asarray(data).reshape(codes.shape[:3])[np.any(masks, axis=0)].astype(np.float64)
        low, high = np.percentile(inside, [0.5, 99.5])
        report.foreground_intensity = (float(low), float(high), float(inside.mean()), float(inside.std()))
    return report


def _load(path: str, what: str, report: CaseReport):
    try:
        return nib.load(path)
    except FileNotFoundError:
        report.problems.append(f"{path}: {what} file is missing")
    except Exception as err:  # nibabel raises many types for bad headers
        report.problems.append(f"{path}: {what} file is unreadable ({type(err).__name__}: {err})")
    return None


def _data(image, path: str, what: str, report: CaseReport) -> np.ndarray | None:
    try:
        if str(path).endswith(".gz"):
            # nibabel reads exactly the bytes the header asks for and stops before the gzip
            # trailer, so flipped bits in the data would load without complaint: decompress the
            # whole file once (gzip checks its CRC-32 and length) and read the array from it
            with gzip.open(path, "rb") as stream:
                image = type(image).from_bytes(stream.read())
        # asanyarray keeps the stored dtype (no float64 copy, no uint8 wrap of codes)
        return np.asanyarray(image.dataobj)
    except Exception as err:  # truncated gzip, bad CRC, short data block...
        report.problems.append(f"{path}: {what} data is corrupt ({type(err).__name__}: {err})")
        return None


def problems_of(reports: list[CaseReport]) -> list[str]:
    return [problem for report in reports for problem in report.problems]


def summary_table(reports: list[CaseReport]) -> pd.DataFrame:
    """One row per task x center x modality: cases, spacing and shape ranges, codes, volumes."""
    rows = []
    for report in reports:
        row = {"task": report.case.task, "center": report.case.center, "modality": report.case.modality,
               "split": report.case.split, "spacing": report.spacing, "shape": report.shape, "codes": report.codes,
               "problems": len(report.problems)}
        row.update({f"{s}_ml": v for s, v in report.volumes_ml.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    out = []
    for (task, center, modality), group in frame.groupby(["task", "center", "modality"], sort=True):
        spacing = np.array([s for s in group["spacing"] if s is not None] or [[np.nan] * 3])
        shape = np.array([s for s in group["shape"] if s is not None] or [[0] * 3])
        entry = {"task": task, "center": center, "modality": modality, "cases": len(group),
                 "splits": "/".join(f"{k}:{v}" for k, v in group["split"].value_counts().sort_index().items()),
                 "spacing_mm": _range(spacing, "{:.2f}"), "shape": _range(shape, "{:d}"),
                 "codes": " ".join(str(c) for c in sorted({c for codes in group["codes"] for c in codes})),
                 "problems": int(group["problems"].sum())}
        for column in [c for c in group.columns if c.endswith("_ml")]:
            entry[column] = round(float(group[column].mean()), 1)
        out.append(entry)
    return pd.DataFrame(out)


def _range(values: np.ndarray, fmt: str) -> str:
    low, high = values.min(axis=0), values.max(axis=0)
    if np.issubdtype(values.dtype, np.integer):
        low, high = low.astype(int), high.astype(int)
    text = lambda v: "x".join(fmt.format(x) for x in v)  # noqa: E731
    return text(low) if np.array_equal(low, high) else f"{text(low)} .. {text(high)}"
