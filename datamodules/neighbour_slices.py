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
    dim = 1 + slice_axis
    length = image.shape[dim]
    blocks = []
    for offset in range(-count, count + 1):
        shifted = torch.full_like(image, PAD_VALUE)
        # block ``offset`` holds, at slice i, the image's slice i + offset
        source = slice(max(offset, 0), max(length + min(offset, 0), 0))
        target = slice(max(-offset, 0), max(length - max(offset, 0), 0))
        index_source = [slice(None)] * image.ndim
        index_target = [slice(None)] * image.ndim
        index_source[dim], index_target[dim] = source, target
        shifted[tuple(index_target)] = image[tuple(index_source)]
        blocks.append(shifted)
    return torch.cat(blocks, 0)
