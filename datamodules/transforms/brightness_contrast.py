"""nnU-Net's multiplicative brightness and contrast augmentation as a TorchIO transform.

TorchIO has gamma, bias field, noise and blur but no brightness or contrast change, and MONAI's
``RandScaleIntensity`` / ``RandAdjustContrast`` draw from their own NumPy generators, which would
make a patch no longer a function of its seed (``PatchDataset`` seeds torch per patch). So this
follows nnU-Net's two transforms (``MultiplicativeBrightnessTransform``, ``ContrastTransform``
with ``preserve_range``) and draws through TorchIO's ``sample_uniform`` (torch's generator).
"""

from __future__ import annotations

import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform
from torchio.transforms.intensity_transform import IntensityTransform


class RandomBrightnessContrast(RandomTransform, IntensityTransform):
    """Scale each image channel's contrast about its mean, then its brightness.

    ``x -> clamp((x - mean) * c + mean, min(x), max(x)) * b`` with ``c`` drawn from
    ``1 +/- contrast`` and ``b`` from ``1 +/- brightness`` (nnU-Net: 0.25 each). The clamp keeps
    the patch's intensity range, as nnU-Net's ``preserve_range``; 0 (the padding value of
    normalised images) stays 0 under the brightness factor.

    Args:
        brightness: half-width of the multiplicative brightness range (0: off).
        contrast: half-width of the contrast factor range (0: off).
        **kwargs: TorchIO ``Transform`` arguments (``p``, ``copy``, ...).
    """

    def __init__(self, brightness: float = 0.25, contrast: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= brightness < 1 or not 0 <= contrast < 1:
            raise ValueError(f"brightness and contrast must be in [0, 1), got {brightness}, {contrast}")
        self.brightness = brightness
        self.contrast = contrast

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            channels = []
            for tensor in image.data.float():
                factor = self.sample_uniform(1 - self.contrast, 1 + self.contrast)
                mean = tensor.mean()
                tensor = torch.clamp((tensor - mean) * factor + mean, tensor.min(), tensor.max())
                channels.append(tensor * self.sample_uniform(1 - self.brightness, 1 + self.brightness))
            image.set_data(torch.stack(channels))
        return subject
