"""Domain-shift augmentation of training patches (TorchIO), configurable from YAML."""

from __future__ import annotations

from dataclasses import dataclass

import torchio as tio


@dataclass
class Augmentation:
    """Random transforms applied to each training patch.

    Rotation and scaling act in the slice plane only (about the slice axis found from the
    spacing), so short-axis stacks are never tilted through their thick slices. No flips: left
    and right ventricles and atria are told apart by side.

    Args:
        probability: chance that each transform is applied to a patch.
        rotation_degrees: in-plane rotation range (+/-).
        scale: in-plane scaling range (+/- fraction).
        bias_field: bias-field polynomial coefficient range (MR inhomogeneity).
        log_gamma: gamma exponent range in log scale (contrast change).
        noise_std: upper bound of added Gaussian noise SD (images are normalised).
        blur_std: upper bound of Gaussian blur SD in mm (resolution change).
    """

    probability: float = 0.3
    rotation_degrees: float = 15.0
    scale: float = 0.1
    bias_field: float = 0.3
    log_gamma: float = 0.3
    noise_std: float = 0.1
    blur_std: float = 0.6

    def __post_init__(self):
        if not 0 <= self.probability <= 1:
            raise ValueError(f"augmentation probability must be in [0, 1], got {self.probability}")
        for name in ("rotation_degrees", "scale", "bias_field", "log_gamma", "noise_std", "blur_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")

    def transform(self, slice_axis: int) -> tio.Transform:
        """The transform for patches whose slice axis is ``slice_axis``."""
        degrees, scales = [0.0] * 6, [1.0] * 6
        degrees[2 * slice_axis: 2 * slice_axis + 2] = (-self.rotation_degrees, self.rotation_degrees)
        for axis in range(3):
            if axis != slice_axis:
                scales[2 * axis: 2 * axis + 2] = (1 - self.scale, 1 + self.scale)
        # copy=False: the patch is already a fresh subject that nothing else holds
        options = {"p": self.probability, "copy": False}
        return tio.Compose([
            tio.RandomAffine(scales=tuple(scales), degrees=tuple(degrees), default_pad_value="minimum", **options),
            tio.RandomBiasField(coefficients=self.bias_field, **options),
            tio.RandomGamma(log_gamma=self.log_gamma, **options),
            tio.RandomBlur(std=(0, self.blur_std), **options),
            tio.RandomNoise(std=(0, self.noise_std), **options),
        ], copy=False)
