"""Spacing-driven geometry decisions.

After reorientation to RAS, the thick-slice axis of an oblique short-axis stack can land on any
array axis (LSP 0.73x0.73x12 mm becomes RAS with 12 mm on the second axis), so every choice here
reads the spacing, never the array order.
"""

from __future__ import annotations

import numpy as np

# A grid is treated as a slice stack when its largest spacing exceeds the smallest by this factor.
STACK_RATIO = 1.5
AXIAL_AXIS = 2  # in RAS order the S axis: the slicing axis of near-isotropic volumes


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm along each array axis (column norms, valid for oblique affines)."""
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


def slice_axis(spacing) -> int:
    """Array axis along which a volume is sliced for 2D models (thickest axis of a stack)."""
    spacing = np.asarray(spacing, dtype=float)
    if spacing.max() > STACK_RATIO * spacing.min():
        return int(np.argmax(spacing))
    return AXIAL_AXIS


def resampled_spacing(spacing, target: float, anisotropy_threshold: float,
                      tolerance: float = 0.0) -> tuple[float, float, float]:
    """Target voxel size for a grid: ``target`` mm on every axis, except that the thick axis
    of a strongly anisotropic stack keeps its own spacing (as nnU-Net does), so a 3-slice
    short-axis stack is not invented into an isotropic volume, and that an axis already within
    ``tolerance`` (a fraction of ``target``) keeps its spacing: resampling 0.73 mm to 0.75 mm
    shifts the grid by half a voxel and blurs boundaries for no gain."""
    spacing = np.asarray(spacing, dtype=float)
    out = np.full(3, float(target))
    close = np.abs(spacing - target) <= tolerance * target
    out[close] = spacing[close]
    if spacing.max() > anisotropy_threshold * spacing.min():
        thick = int(np.argmax(spacing))
        out[thick] = spacing[thick]
    return tuple(float(v) for v in out)
