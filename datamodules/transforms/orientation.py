"""Every in-plane orientation of a patch: the 8 flips and quarter turns of its slice plane.

A short-axis stack reaches the model in whatever in-plane orientation its center's planning and
its file's affine leave after reorientation (ACDC's copy carries no orientation at all); a model
that has only met one orientation finds no heart in another (issue 29, benchmarks/RESULTS.md).
TorchIO has flips but no quarter turn, and a 90-degree ``RandomAffine`` resamples (blurring the
label and cutting the patch's corners), so the exact voxel permutation is written here.
"""

from __future__ import annotations

import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform
from torchio.transforms.spatial_transform import SpatialTransform


def slice_axis_of(axes: tuple[int, int]) -> int:
    """The spatial axis across the plane ``axes`` (two different axes of 0-2), checked once for
    every in-plane transform."""
    if len(axes) != 2 or len(set(axes)) != 2 or any(axis not in (0, 1, 2) for axis in axes):
        raise ValueError(f"axes must be two different spatial axes (0-2), got {axes}")
    return next(axis for axis in range(3) if axis not in axes)


class RandomInPlaneOrientation(RandomTransform, SpatialTransform):
    """One of the 8 orientations of the plane spanned by ``axes`` (a mirror, then 0-3 quarter
    turns), each equally likely, applied alike to images and label maps. A patch that is not
    square in that plane gets half turns only, which keep its shape.

    Args:
        axes: the two in-plane spatial axes (0-2).
        **kwargs: TorchIO ``Transform`` arguments (``p``, ``copy``, ...).
    """

    def __init__(self, axes: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        slice_axis_of(axes)
        self.axes = tuple(axes)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        mirror = bool(torch.randint(0, 2, (1,)))
        turns = int(torch.randint(0, 4, (1,)))
        dims = tuple(1 + axis for axis in self.axes)  # image data is [C, *S]
        for image in self.get_images(subject):
            data = image.data
            if data.shape[dims[0]] != data.shape[dims[1]]:
                turns = 2 * (turns % 2)  # keep the shape: no turn or half a turn
            data = data.flip(dims[0]) if mirror else data
            image.set_data(torch.rot90(data, turns, dims=dims).contiguous())
        return subject
