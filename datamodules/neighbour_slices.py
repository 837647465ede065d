"""2.5D input: a 2D model sees each slice with its neighbours along the slice axis as channels.

nnU-Net's 2D configuration and most 2.5D cardiac models give the network a few adjacent slices,
so through-plane context (where the atrium ends, whether a bright rim continues) is visible
to a per-slice model for the cost of its first convolution. The same function builds the
channels of the training volumes (``PatchDataset``) and of the volumes the inferer slices
(``CardiacSegmentationModule``), so a training patch is exactly a window the inferer hands the
network. Written by hand because neither MONAI nor TorchIO stacks shifted slices into channels.
"""

from __future__ import annotations

import torch

from datamodules.preprocessing import PAD_VALUE


def check_neighbour_slices(count: int, patch_size) -> None:
    """Refuse a neighbour count that is negative, or positive for 3D patches (2.5D is for 2D models)."""
    if count < 0 or (count and len(patch_size) != 2):
        raise ValueError(f"neighbour_slices (2.5D) must be >= 0, and 0 for 3D patches; got {count} "
                         f"with patch_size {list(patch_size)}")


def with_neighbour_slices(image: torch.Tensor, slice_axis: int, count: int) -> torch.Tensor:
    """``image [C, *S]`` -> ``[C * (2 * count + 1), *S]``: for each offset ``-count..count``
    along spatial axis ``slice_axis``, the image shifted by it (channel block ``count`` is the
    image itself); slices beyond the volume are ``PAD_VALUE``, as the inferers pad."""
    if count < 0:
        raise ValueError(f"neighbour slice count must be >= 0, got {count}")
    if count == 0:
        return image
    if not 0 <= slice_axis < image.ndim - 1:
        raise ValueError(f"slice_axis {slice_axis} is not a spatial axis of an image shaped {tuple(image.shape)}")
    dim, length = 1 + slice_axis, image.shape[1 + slice_axis]
    border = list(image.shape)
    border[dim] = count
    pad = image.new_full(border, PAD_VALUE)
    padded = torch.cat([pad, image, pad], dim)
    # block ``offset`` holds, at slice i, the image's slice i + offset (padded index count + i + offset)
    return torch.cat([padded.narrow(dim, count + offset, length) for offset in range(-count, count + 1)], 0)
