"""Systole from diastole: the ventricle of a patch contracted as a beating heart contracts it.

The LGE training images are all acquired in diastole (MyoPS); a center's cine stacks come at end
systole too, where the cavity is small and the wall thick, a shape no diastolic image shows: the
leave-ACDC-out model scored end-systole LV 0.27 against 0.73 at end diastole (issue 29,
benchmarks/RESULTS.md). Neither TorchIO nor MONAI deforms about a structure (their elastic
transforms move random control points), so the radial map is written here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchio as tio
from torchio.transforms.augmentation import RandomTransform
from torchio.transforms.spatial_transform import SpatialTransform

from datamodules.transforms.orientation import slice_axis_of


def contraction_sources(shape: tuple[int, int], centre: torch.Tensor, radius: float, ratio: float) -> torch.Tensor:
    """Source position ``[H, W, 2]`` (voxels) of every voxel of a plane whose circular cavity of
    ``radius`` about ``centre`` contracts to ``ratio * radius``: the cavity shrinks uniformly, and
    every ring outside it keeps its area (the myocardium is incompressible, so the wall thickens),
    which moves tissue far from the heart less and less (the map tends to the identity).

    Inside the contracted cavity (r <= r_c = ratio * R) the source radius is r / ratio; outside
    it is sqrt(r^2 - r_c^2 + R^2): continuous at r_c and increasing, so nothing folds.
    """
    grid = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij"), dim=-1)
    offset = grid - centre
    r = offset.norm(dim=-1)
    contracted = ratio * radius
    source_r = torch.where(r <= contracted, r / ratio, torch.sqrt((r ** 2 - contracted ** 2 + radius ** 2).clamp(min=0)))
    scale = torch.where(r > 0, source_r / r.clamp(min=1e-6), torch.ones_like(r))
    return centre + offset * scale[..., None]


class RandomVentricleContraction(RandomTransform, SpatialTransform):
    """Contract the cavity labelled ``cavity_codes`` in each slice of the plane ``axes`` by a
    radius ratio drawn from ``[smallest_ratio, 1]`` (one per patch), about the cavity's centroid
    and at its area-equivalent radius (``contraction_sources``). Images are resampled linearly,
    label maps by nearest neighbour; sources past the patch edge repeat the edge (a few voxels
    at most: the map barely moves tissue far from the cavity). Slices with fewer than
    ``min_voxels`` cavity voxels are left alone.

    Args:
        axes: the two in-plane spatial axes (0-2).
        cavity_codes: label values of the cavity (the LV blood pool of the patch's layout).
        smallest_ratio: the smallest contracted-to-original cavity radius (0.5: a quarter of
            the area, a strongly contracting ventricle).
        label_key: the subject's label map that holds ``cavity_codes``.
        min_voxels: cavity voxels a slice needs to be contracted.
        **kwargs: TorchIO ``Transform`` arguments (``p``, ``copy``, ...).
    """

    def __init__(self, axes: tuple[int, int], cavity_codes: tuple[int, ...], smallest_ratio: float = 0.5,
                 label_key: str = "label", min_voxels: int = 20, **kwargs):
        super().__init__(**kwargs)
        self.slice_axis = slice_axis_of(axes)
        if not 0 < smallest_ratio <= 1:
            raise ValueError(f"smallest_ratio must be in (0, 1], got {smallest_ratio}")
        self.axes = tuple(axes)
        self.cavity_codes = tuple(cavity_codes)
        self.smallest_ratio = smallest_ratio
        self.label_key = label_key
        self.min_voxels = min_voxels

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        if not self.cavity_codes or self.label_key not in subject:
            return subject
        ratio = self.smallest_ratio + (1 - self.smallest_ratio) * float(torch.rand(()))
        slice_axis = self.slice_axis
        label = subject[self.label_key].data[0]
        cavity = torch.isin(label, torch.tensor(self.cavity_codes, dtype=label.dtype))
        grids = {}
        for index in range(label.shape[slice_axis]):
            mask = cavity.select(slice_axis, index)
            count = int(mask.sum())
            if count < self.min_voxels:
                continue
            centre = mask.nonzero().float().mean(dim=0)
            sources = contraction_sources(tuple(mask.shape), centre, math.sqrt(count / math.pi), ratio)
            # grid_sample wants (x, y) = (last, first) dimension, normalised to [-1, 1] over the voxel centres
            sizes = torch.tensor(mask.shape, dtype=torch.float32)
            normalised = 2 * sources / (sizes - 1).clamp(min=1) - 1
            grids[index] = normalised.flip(-1)[None]
        if not grids:
            return subject
        for image in self.get_images(subject):
            is_label = isinstance(image, tio.LabelMap)
            data = image.data
            warped = data.clone()
            for index, grid in grids.items():
                plane = data.select(1 + slice_axis, index)  # [C, *plane], as the mask
                dtype = plane.dtype
                moved = F.grid_sample(plane[None].float(), grid, mode="nearest" if is_label else "bilinear",
                                      padding_mode="border", align_corners=True)[0]
                warped.select(1 + slice_axis, index).copy_(moved.to(dtype))
            image.set_data(warped)
        return subject
