"""Resolution loss along one axis (TorchIO's ``RandomAnisotropy`` rule), resized by MONAI in torch.

``tio.RandomAnisotropy`` downsamples by nearest neighbour and upsamples by linear interpolation
through two SimpleITK resamplings, with a NumPy/SimpleITK conversion each way: 12-24 ms per 96^3
patch, the second costliest 3D augmentation (``benchmarks/augmentation_cost.py``). The same two
resizes on the tensor with MONAI's ``Zoom`` (nearest) and ``Resize`` (linear) cost about 3 ms.
The axis and factor are drawn as TorchIO draws them, from torch's generator, so a patch stays a
function of its seed. The grids differ from SimpleITK's at the edges (TorchIO resamples in
physical space and pads outside the coarse grid), so the values are close, not equal.
"""

from __future__ import annotations

import torch
import torchio as tio
from monai.transforms import Resize, Zoom
from monai.utils import convert_to_tensor
from torchio.transforms.augmentation import RandomTransform
from torchio.transforms.intensity_transform import IntensityTransform


class RandomLowResolution(RandomTransform, IntensityTransform):
    """Downsample each scalar image along one of ``axes`` by a factor drawn uniformly from
    ``downsampling``, then resize it back to its shape. Label maps are untouched, as with
    ``tio.RandomAnisotropy(scalars_only=True)``.

    Args:
        axes: spatial axes (0-2) to choose the degraded axis from, one per call.
        downsampling: range of the downsampling factor, each >= 1.
        **kwargs: TorchIO ``Transform`` arguments (``p``, ``copy``, ...).
    """

    def __init__(self, axes: tuple[int, ...] = (0, 1, 2), downsampling: tuple[float, float] = (1.5, 5.0), **kwargs):
        super().__init__(**kwargs)
        if not axes or any(axis not in (0, 1, 2) for axis in axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes}")
        if not 1 <= downsampling[0] <= downsampling[1]:
            raise ValueError(f"downsampling must be a range (a, b) with 1 <= a <= b, got {downsampling}")
        self.axes = tuple(axes)
        self.downsampling = tuple(downsampling)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        # RandomAnisotropy.get_params' draws, in its order: the axis, then the factor
        axis = self.axes[int(torch.randint(0, len(self.axes), (1,)))]
        factor = float(self.sample_uniform(*self.downsampling))
        for image in self.get_images(subject):
            data = image.data.float()
            zoom = [1.0] * 3
            zoom[axis] = 1 / factor
            # "nearest-exact" samples the coarse grid at its voxel centres, as TorchIO's physical-
            # space resampling does; torch's "nearest" starts it at the first voxel, which shifts
            # the image against its label by up to a voxel (tests/test_augmentation.py)
            coarse = Zoom(zoom=zoom, mode="nearest-exact", keep_size=False)(data)
            fine = Resize(spatial_size=tuple(data.shape[1:]), mode="trilinear")(coarse)
            image.set_data(convert_to_tensor(fine, track_meta=False).to(image.data.dtype))
        return subject
