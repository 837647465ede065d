"""A data fingerprint and the plan nnU-Net would derive from it, set next to the experiment's own
settings, so a researcher pointing the sources at new data sees what to change.

nnU-Net plans target spacing as the median spacing of the training cases and, for its 2D
configuration, a patch that holds the median in-plane field of view of the resampled images
(rounded up to what the network's downsampling divides). Its intensity normalisation is per
case z-scoring for MRI, and for CT a clip to the 0.5th-99.5th percentile of the training cases'
foreground intensities (here: the median of each case's, from the data check). Here the experiment's settings stay in
charge (YAML overrides them as usual); the plan is printed by ``care-cardiac check``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

import vocabulary
from datamodules.checks import CaseReport
from datamodules.geometry import slice_axis
from datamodules.preprocessing import Preprocessing

# a 2D patch side is rounded up to a multiple of this: 5 stride-2 downsamplings (PlainUNet's
# default 6 levels; SwinUNETR also downsamples 32x)
PATCH_DIVISOR = 32


def fingerprint(reports: list[CaseReport]) -> pd.DataFrame:
    """Per task: training cases, median voxel spacing (in-plane, through-plane), median in-plane
    field of view in mm and median slice count, from the data check's reports."""
    rows = []
    for report in reports:
        if report.case.split != "train" or report.spacing is None or report.shape is None:
            continue
        spacing, shape = np.asarray(report.spacing, float), np.asarray(report.shape, int)
        thick = slice_axis(spacing)  # a stack's thick axis, else the axial one
        plane = [axis for axis in range(3) if axis != thick]
        extent = sorted((shape[plane] * spacing[plane]).tolist(), reverse=True)
        rows.append({"task": report.case.task, "in_plane_mm": float(np.min(spacing[plane])),
                     "through_plane_mm": float(spacing[thick]), "fov_mm_long": extent[0],
                     "fov_mm_short": extent[1], "slices": int(shape[thick])})
    if not rows:
        return pd.DataFrame(columns=["task", "cases", "in_plane_mm", "through_plane_mm", "fov_mm_long",
                                     "fov_mm_short", "slices"])
    frame = pd.DataFrame(rows)
    medians = frame.groupby("task").median(numeric_only=True)
    medians.insert(0, "cases", frame.groupby("task").size())
    return medians.reset_index()


def plan(reports: list[CaseReport], preprocessing: Preprocessing, patch_size: list[int]) -> pd.DataFrame:
    """The fingerprint with nnU-Net's choices next to the experiment's: target spacing (median
    in-plane spacing vs ``preprocessing.target_spacing``), the in-plane field of view in voxels
    at the configured spacing, the 2D patch that holds it whole, and the share of it the
    configured patch covers."""
    table = fingerprint(reports)
    rows = []
    for row in table.itertuples():
        target = preprocessing.target_spacing.get(row.task)
        entry = {"task": row.task, "cases": int(row.cases),
                 "spacing_mm": f"{row.in_plane_mm:.2f} x {row.through_plane_mm:.2f}",
                 "fov_mm": f"{row.fov_mm_long:.0f} x {row.fov_mm_short:.0f}", "slices": int(row.slices),
                 "nnunet_spacing_mm": round(float(row.in_plane_mm), 2), "target_spacing_mm": target,
                 "normalisation": "/".join(sorted({vocabulary.modality(r.case.modality).normalisation
                                                   for r in reports if r.case.task == row.task}))}
        if target:
            fov = (row.fov_mm_long / target, row.fov_mm_short / target)
            whole = [PATCH_DIVISOR * math.ceil(v / PATCH_DIVISOR) for v in fov]
            covered = min(patch_size[0] / fov[0], 1.0) * min(patch_size[-1] / fov[1], 1.0) if len(patch_size) == 2 else None
            entry.update({"fov_voxels": f"{fov[0]:.0f} x {fov[1]:.0f}", "whole_fov_patch_2d": f"{whole[0]} x {whole[1]}",
                          "patch": " x ".join(str(n) for n in patch_size),
                          "fov_covered": None if covered is None else round(covered, 2)})
        window = ct_window(reports, row.task)
        if window is not None:
            entry.update({"nnunet_ct_window": f"{window[0]:.0f} .. {window[1]:.0f}",
                          "ct_window": f"{preprocessing.ct_window[0]:.0f} .. {preprocessing.ct_window[1]:.0f}"})
        rows.append(entry)
    return pd.DataFrame(rows)


def ct_window(reports: list[CaseReport], task: str) -> tuple[float, float] | None:
    """nnU-Net's CT clip for ``task``: the 0.5th and 99.5th percentile of foreground intensities,
    as the median over the task's CT training cases of each case's (``None`` without CT cases)."""
    ranges = [r.foreground_intensity[:2] for r in reports
              if r.case.task == task and r.case.split == "train" and r.foreground_intensity is not None
              and vocabulary.modality(r.case.modality).normalisation == "ct"]
    if not ranges:
        return None
    low, high = np.median(np.asarray(ranges), axis=0)
    return float(low), float(high)
