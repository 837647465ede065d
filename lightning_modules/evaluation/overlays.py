"""One picture of a case: image, reference and prediction on the slice where the reference is largest."""

from __future__ import annotations

import numpy as np

from datamodules.geometry import slice_axis

# one colour per prompt (RGB), cycled; tab10's first colours
PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                    [140, 86, 75], [227, 119, 194], [188, 189, 34], [23, 190, 207], [127, 127, 127]], dtype=float)


def largest_slice(masks: np.ndarray, axis: int) -> int:
    """Index along ``axis`` of the slice with the most foreground voxels over all masks ``[P, *S]``."""
    area = np.moveaxis(masks.any(0), axis, 0).reshape(masks.shape[1 + axis], -1).sum(1)
    return int(np.argmax(area))


def _tint(gray: np.ndarray, masks: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    for index, mask in enumerate(masks):
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * PALETTE[index % len(PALETTE)]
    return rgb


def overlay_panel(image: np.ndarray, reference: np.ndarray, predicted: np.ndarray, spacing) -> np.ndarray:
    """``uint8 [H, 3W, 3]``: the image, the reference and the prediction side by side on one slice.

    Args:
        image: intensities on the file's grid ``[*S]``.
        reference: binary masks ``[P, *S]`` (one colour per prompt, in order).
        predicted: binary masks ``[P, *S]``.
        spacing: voxel size (mm) of the grid; the slice is taken across its thickest axis.
    """
    axis = slice_axis(spacing)
    index = largest_slice(reference if reference.any() else predicted, axis)
    take = lambda volume: np.rot90(np.take(volume, index, axis=axis))  # noqa: E731
    gray = take(np.asarray(image, dtype=float))
    low, high = np.percentile(gray, [1, 99]) if gray.size else (0.0, 1.0)
    gray = np.clip((gray - low) / max(high - low, 1e-6), 0, 1) * 255
    slices = [np.stack([take(m) for m in masks]) if len(masks) else np.zeros((0, *gray.shape), bool)
              for masks in (reference, predicted)]
    panels = [np.repeat(gray[..., None], 3, axis=-1), _tint(gray, slices[0]), _tint(gray, slices[1])]
    return np.concatenate(panels, axis=1).astype(np.uint8)
