"""Global intensity non-linear augmentation (GIN, Ouyang et al. 2022): a shallow network with
random weights redraws a patch's intensities and texture, so the model leans on shape rather than
on one sequence's contrast.

A model trained on LGE alone reads the brightest blood of a cine (bSSFP) cavity as the bright
scar of LGE, which lies inside the myocardium: the leave-ACDC-out model paints myocardium over the
LV blood pool (issue 29). Gamma, brightness and bias fields keep the order of intensities; this
does not. Neither TorchIO nor MONAI has it, so it is written here after the authors' reference
(random 1x1 or 3x3 in-plane convolutions, leaky ReLU, a random mix with the input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchio as tio
from torchio.transforms.augmentation import RandomTransform
from torchio.transforms.intensity_transform import IntensityTransform

from datamodules.transforms.orientation import slice_axis_of


class RandomConvolutionIntensity(RandomTransform, IntensityTransform):
    """Pass each scalar image through ``layers`` random in-plane convolutions (kernel 1 or 3,
    ``channels`` intermediate channels, leaky ReLU between), mix the result with the input by a
    weight drawn from [0, 1], and give it back the input's mean and standard deviation (the
    images are normalised). One network per patch, the same for all its slices.

    Args:
        axes: the two in-plane spatial axes (0-2).
        layers: convolutions in the network (at least 2).
        channels: channels between them.
        **kwargs: TorchIO ``Transform`` arguments (``p``, ``copy``, ...).
    """

    def __init__(self, axes: tuple[int, int], layers: int = 4, channels: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.slice_axis = slice_axis_of(axes)
        if layers < 2 or channels < 1:
            raise ValueError(f"layers must be >= 2 and channels >= 1, got {layers}, {channels}")
        self.axes = tuple(axes)
        self.layers = layers
        self.channels = channels

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        slice_axis = self.slice_axis
        for image in self.get_images(subject):
            data = image.data.float()
            planes = data.movedim(1 + slice_axis, 0)  # [S, C, *plane]: slices as a batch
            x = planes
            for layer in range(self.layers):
                size = (1, 3)[int(torch.randint(0, 2, ()))]
                out = planes.shape[1] if layer == self.layers - 1 else self.channels
                weight = torch.randn(out, x.shape[1], size, size)
                x = F.conv2d(x, weight, bias=torch.randn(out), padding=size // 2)
                if layer < self.layers - 1:
                    x = F.leaky_relu(x)
            alpha = float(torch.rand(()))
            mixed = alpha * x + (1 - alpha) * planes
            mixed = (mixed - mixed.mean()) / mixed.std().clamp(min=1e-6) * planes.std() + planes.mean()
            image.set_data(mixed.movedim(0, 1 + slice_axis).to(image.data.dtype).contiguous())
        return subject
