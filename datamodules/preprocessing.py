"""Load -> canonical orientation -> task spacing -> per-modality intensity normalisation (TorchIO)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torchio as tio

import vocabulary
from datamodules.case import Case
from datamodules.geometry import resampled_spacing, slice_axis, spacing_of

# The value normalised images are padded with wherever a patch or window reaches past the volume:
# in training patches (PatchDataset), in rotated patch corners (Augmentation) and by MONAI's
# inferers (their ``cval``, 0 by default), as nnU-Net pads with 0 in both. It must be one value:
# LA volumes at 1.25 mm are ~95x72 voxels, so a quarter of each 96x96 slice is padding, and a
# model trained on slices padded with the volume's minimum (about -1.7 after z-scoring) but run
# on slices padded with 0 found 8-22 ml of 32-68 ml atria (validation Dice 0.45; 0.79 with the
# same weights and matching padding; benchmarks/RESULTS.md, issue 13).
PAD_VALUE = 0.0


@dataclass
class PreprocessedCase:
    """A case on its training grid, with what is needed to go back to the original grid.

    Args:
        case: the source record.
        role: ``ID`` or ``OOD`` for its task and center.
        image: normalised intensities ``[C, *S]`` (float32) on the canonical, resampled grid.
        label: label codes ``[*S]`` on the same grid (dataset codes, int32).
        affine: voxel-to-world affine of that grid.
        slice_axis: array axis to slice along for 2D models (from spacing).
        original_shape: spatial shape of the file on disk.
        original_affine: affine of the file on disk.
    """

    case: Case
    role: str
    image: torch.Tensor
    label: torch.Tensor
    affine: np.ndarray
    slice_axis: int
    original_shape: tuple[int, ...]
    original_affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return spacing_of(self.affine)


@dataclass
class Preprocessing:
    """Geometry and intensity preprocessing shared by training, validation and inference.

    Args:
        target_spacing: task key -> voxel size in mm of the training grid. Strongly anisotropic
            stacks keep their slice spacing (see ``anisotropy_threshold``).
        anisotropy_threshold: ratio of largest to smallest spacing above which the thick axis
            is not resampled.
        spacing_tolerance: an axis whose spacing is within this fraction of the target keeps
            its own spacing (a volume with all axes within it is not resampled at all).
        ct_window: HU window clipped and scaled to [-1, 1] for CT.
        mri_percentiles: intensity percentiles clipped before z-scoring MRI.
    """

    target_spacing: dict[str, float] = field(default_factory=lambda: {"la": 1.25, "whs": 1.5, "myops": 1.25,
                                                                                  "acdc": 1.25})
    anisotropy_threshold: float = 3.0
    spacing_tolerance: float = 0.05
    ct_window: tuple[float, float] = (-250.0, 750.0)
    mri_percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self):
        for key, value in self.target_spacing.items():
            vocabulary.task(key)
            if value <= 0:
                raise ValueError(f"target_spacing[{key!r}] must be positive, got {value}")
        if self.anisotropy_threshold < 1:
            raise ValueError(f"anisotropy_threshold must be >= 1, got {self.anisotropy_threshold}")
        if not 0 <= self.spacing_tolerance < 1:
            raise ValueError(f"spacing_tolerance must be in [0, 1), got {self.spacing_tolerance}")
        if self.ct_window[0] >= self.ct_window[1]:
            raise ValueError(f"ct_window must be (low, high) with low < high, got {self.ct_window}")
        if not 0 <= self.mri_percentiles[0] < self.mri_percentiles[1] <= 100:
            raise ValueError(f"mri_percentiles must be (low, high) within [0, 100], got {self.mri_percentiles}")

    def intensity(self, modality: str) -> tio.Transform:
        if vocabulary.modality(modality).normalisation == "ct":
            low, high = self.ct_window
            return tio.Compose([tio.Clamp(low, high), tio.RescaleIntensity((-1.0, 1.0), in_min_max=(low, high))])
        # MRI has no absolute scale: robust min-max clip, then z-score over the volume.
        return tio.Compose([tio.RescaleIntensity((0.0, 1.0), percentiles=self.mri_percentiles), tio.ZNormalization()])

    def __call__(self, case: Case, role: str) -> PreprocessedCase:
        if case.task not in self.target_spacing:
            raise ValueError(f"no target_spacing for task {case.task!r} (case {case.uid})")
        images = {"image": tio.ScalarImage(case.image)}
        if case.label is not None:
            images["label"] = tio.LabelMap(case.label)
        subject = tio.Subject(images)
        original_shape = tuple(subject["image"].spatial_shape)
        original_affine = subject["image"].affine.copy()
        subject = tio.ToCanonical()(subject)
        spacing = resampled_spacing(subject["image"].spacing, self.target_spacing[case.task], self.anisotropy_threshold,
                                    self.spacing_tolerance)
        if not np.allclose(spacing, subject["image"].spacing, rtol=0, atol=1e-6):
            subject = tio.Resample(spacing)(subject)
        subject = self.intensity(case.modality)(subject)
        image = subject["image"]
        label = subject["label"].data[0].to(torch.int32) if case.label is not None else torch.zeros(image.spatial_shape, dtype=torch.int32)
        return PreprocessedCase(case=case, role=role, image=image.data.float(), label=label,
                                affine=image.affine.copy(), slice_axis=slice_axis(image.spacing),
                                original_shape=original_shape, original_affine=original_affine)


def to_original_grid(maps: torch.Tensor, affine: np.ndarray, original_shape, original_affine: np.ndarray) -> torch.Tensor:
    """Resample per-prompt maps ``[P, *S]`` from the training grid back onto the file's grid.

    Linear interpolation of probabilities (then thresholding by the caller) keeps boundaries
    smoother than resampling hard masks; world coordinates make this exact for any orientation.
    """
    shape = tuple(int(n) for n in original_shape)
    resample = tio.Resample((shape, original_affine), image_interpolation="linear")
    out = torch.empty((maps.shape[0], *shape), dtype=torch.float32)
    for index in range(maps.shape[0]):  # one map at a time: TorchIO's copies of a CT-sized stack cost GBs
        image = tio.ScalarImage(tensor=maps[index:index + 1].detach().float().cpu(), affine=affine)
        out[index] = resample(image).data[0]
    return out
