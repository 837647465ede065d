"""Slice-by-slice inference with a second, heart-centred window: the model's answer is best when its
window holds the whole heart (``benchmarks/window_position.py``), which sliding windows rarely do."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from monai.inferers import SliceInferer

from lightning_modules.inference.predictor import (
    WINDOW_BATCH,
    WINDOW_BLEND,
    WINDOW_OVERLAP,
)


def interior_weight(shape: tuple[int, ...], margin: float) -> torch.Tensor:
    """1 inside the window, falling linearly to 0 over ``margin`` of each side at its edges.

    Written here because MONAI's importance maps are constant or Gaussian: neither says "the
    voxels whose context this window holds take its answer" while still blending at the seam.
    """
    weight = torch.ones(shape)
    for axis, size in enumerate(shape):
        ramp_width = max(int(size * margin), 1)
        distance = torch.minimum(torch.arange(size), torch.arange(size).flip(0)).float()
        ramp = ((distance + 1) / ramp_width).clamp(max=1.0)
        view = [1] * len(shape)
        view[axis] = size
        weight = weight * ramp.view(view)
    return weight


class HeartCentredSliceInferer(SliceInferer):
    """MONAI's ``SliceInferer``, then one more window per slice centred on the heart.

    After the sliding windows, the in-plane median of every voxel that any prompt marks (logit
    above 0) gives the heart's centre; one window per slice, centred there, is run and blended in
    with ``interior_weight``. Nothing marked: the sliding-window answer as it is.

    Args:
        roi_size: the in-plane window (linked from ``data.patch_size`` in experiments).
        spatial_dim: the axis slices are taken across (as ``SliceInferer``).
        sw_batch_size, overlap, mode: the sliding windows, as MONAI's (the project's defaults).
        margin: share of the window, at each edge, over which the centred answer hands over to
            the sliding windows'.
    """

    def __init__(self, roi_size: Sequence[int], spatial_dim: int = 2, sw_batch_size: int = WINDOW_BATCH,
                 overlap: float = WINDOW_OVERLAP, mode: str = WINDOW_BLEND, margin: float = 0.125):
        super().__init__(spatial_dim, roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode=mode)
        if not 0 < margin <= 0.5:
            raise ValueError(f"margin must be in (0, 0.5], got {margin}")
        self.margin = margin

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        if inputs.shape[0] != 1:  # one heart's centre per call: several volumes would share the first's
            raise ValueError(f"HeartCentredSliceInferer takes one volume at a time, got a batch of {inputs.shape[0]}")
        logits = super().__call__(inputs, network, *args, **kwargs)
        plane = [axis for axis in range(2, inputs.ndim) if axis != 2 + self.spatial_dim]
        marked = (logits[0] > 0).any(0).nonzero()  # [N, 3] voxel indices of the spatial axes
        if len(marked) == 0:
            return logits
        region = [slice(None)] * inputs.ndim
        for axis, size in zip(plane, self.roi_size):
            length = inputs.shape[axis]
            centre = int(marked[:, axis - 2].float().median())
            start = min(max(centre - size // 2, 0), max(length - size, 0))
            region[axis] = slice(start, min(start + size, length))
        region = tuple(region)
        centred = super().__call__(inputs[region], network, *args, **kwargs)
        weight = interior_weight(tuple(centred.shape[axis] for axis in plane), self.margin).to(logits)
        view = [1] * inputs.ndim
        for axis in plane:
            view[axis] = centred.shape[axis]
        weight = weight.view(view)
        logits[region] = (1 - weight) * logits[region] + weight * centred
        return logits
