"""Domain-shift augmentation of training patches (TorchIO), configurable from YAML."""

from __future__ import annotations

from dataclasses import dataclass

import torchio as tio

from datamodules.preprocessing import PAD_VALUE
from datamodules.transforms.bias_field import SeparableRandomBiasField
from datamodules.transforms.brightness_contrast import RandomBrightnessContrast
from datamodules.transforms.contraction import RandomVentricleContraction
from datamodules.transforms.low_resolution import RandomLowResolution
from datamodules.transforms.orientation import RandomInPlaneOrientation
from datamodules.transforms.random_convolution import RandomConvolutionIntensity


@dataclass
class Augmentation:
    """Random transforms applied to each training patch.

    Rotation, scaling and reorientation act in the slice plane only (about the slice axis found
    from the spacing), so short-axis stacks are never tilted through their thick slices.

    Args:
        probability: chance that each transform is applied to a patch.
        rotation_degrees: in-plane rotation range (+/-).
        scale: in-plane scaling range (+/- fraction).
        bias_field: bias-field polynomial coefficient range (MR inhomogeneity).
        log_gamma: gamma exponent range in log scale (contrast change).
        noise_std: upper bound of added Gaussian noise SD (images are normalised).
        blur_std: upper bound of Gaussian blur SD in mm (resolution change).
        max_downsampling: in-plane resolution loss: downsample by up to this factor and back
            (TorchIO ``RandomAnisotropy``'s rule, ``RandomLowResolution``); 1 turns it off.
        brightness: nnU-Net's multiplicative brightness range (+/- fraction; 0 turns it off).
        contrast: nnU-Net's contrast factor range about the patch mean (+/- fraction; 0: off).
        orientation_probability: chance that a patch is put in one of the 8 in-plane
            orientations (mirror and quarter turns, each equally likely), so the model meets
            the heart however a center's planes and files orient it.
        contraction_probability: chance that a patch's LV cavity is contracted as in systole
            (the wall thickening, its area kept), so diastolic training images teach the
            end-systolic shape of cine frames.
        contraction_ratio: the smallest contracted-to-original cavity radius.
        random_convolution_probability: chance that a patch's intensities are redrawn by a
            random shallow network (GIN), so no one sequence's contrast is learnt as the
            structure.
    """

    probability: float = 0.3
    rotation_degrees: float = 15.0
    scale: float = 0.1
    bias_field: float = 0.3
    log_gamma: float = 0.3
    noise_std: float = 0.1
    blur_std: float = 0.6
    max_downsampling: float = 2.0
    brightness: float = 0.0
    contrast: float = 0.0
    orientation_probability: float = 0.0
    contraction_probability: float = 0.0
    contraction_ratio: float = 0.5
    random_convolution_probability: float = 0.0

    def __post_init__(self):
        for name in ("probability", "orientation_probability", "contraction_probability",
                     "random_convolution_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augmentation {name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("rotation_degrees", "scale", "bias_field", "log_gamma", "noise_std", "blur_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")
        if not (0 <= self.brightness < 1 and 0 <= self.contrast < 1):
            raise ValueError(f"augmentation brightness and contrast must be in [0, 1), got {self.brightness}, {self.contrast}")
        if not 0 < self.contraction_ratio <= 1:
            raise ValueError(f"augmentation contraction_ratio must be in (0, 1], got {self.contraction_ratio}")
        if self.max_downsampling < 1:
            raise ValueError(f"augmentation max_downsampling must be >= 1, got {self.max_downsampling}")

    def transform(self, slice_axis: int, cavity_codes: tuple[int, ...] = ()) -> tio.Transform:
        """The transform for patches whose slice axis is ``slice_axis`` and whose label map
        codes the LV cavity as ``cavity_codes`` (none: no contraction)."""
        degrees, scales = [0.0] * 6, [1.0] * 6
        degrees[2 * slice_axis: 2 * slice_axis + 2] = (-self.rotation_degrees, self.rotation_degrees)
        for axis in range(3):
            if axis != slice_axis:
                scales[2 * axis: 2 * axis + 2] = (1 - self.scale, 1 + self.scale)
        # copy=False: the patch is already a fresh subject that nothing else holds
        options = {"p": self.probability, "copy": False}
        in_plane = tuple(axis for axis in range(3) if axis != slice_axis)
        extra = []
        if self.contraction_probability and cavity_codes:
            extra.append(RandomVentricleContraction(axes=in_plane, cavity_codes=cavity_codes,
                                                    smallest_ratio=self.contraction_ratio,
                                                    p=self.contraction_probability, copy=False))
        if self.max_downsampling > 1:
            # one in-plane axis at a time, as a coarser acquisition matrix would be (TorchIO's
            # RandomAnisotropy rule, resized in torch: 4-8x cheaper at 96^3)
            extra.append(RandomLowResolution(axes=in_plane, downsampling=(1.0, self.max_downsampling), **options))
        if self.orientation_probability:
            extra.append(RandomInPlaneOrientation(axes=in_plane, p=self.orientation_probability, copy=False))
        if self.rotation_degrees or self.scale:
            # the costliest transform at 96^3 (two SimpleITK resamplings, ~35 ms with p=1): with
            # both ranges 0 it is left out rather than run as an identity resampling
            extra.append(tio.RandomAffine(scales=tuple(scales), degrees=tuple(degrees), default_pad_value=PAD_VALUE,
                                          **options))
        return tio.Compose([*extra,
            SeparableRandomBiasField(coefficients=self.bias_field, **options),  # TorchIO's, 40x cheaper in 3D
            tio.RandomGamma(log_gamma=self.log_gamma, **options),
            *([RandomBrightnessContrast(self.brightness, self.contrast, **options)] if self.brightness or self.contrast else []),
            tio.RandomBlur(std=(0, self.blur_std), **options),
            tio.RandomNoise(std=(0, self.noise_std), **options),
            # last: a redrawn contrast is not undone by the intensity transforms above
            *([RandomConvolutionIntensity(axes=in_plane, p=self.random_convolution_probability, copy=False)]
              if self.random_convolution_probability else []),
        ], copy=False)
