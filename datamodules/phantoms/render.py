"""Render one phantom case: a scanner grid (spacing, orientation, field of view) and an image."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

import vocabulary
from datamodules.phantoms import anatomy as A
from datamodules.phantoms.centers import CONTRASTS, CenterProfile

_AXIS_CODES = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _directions_with_axis2(nominal: np.ndarray, axis2: np.ndarray) -> np.ndarray:
    """Orthonormal axes whose third is ``axis2`` and whose first two stay as close as possible
    to the nominal ones (Gram-Schmidt), so the axis codes of the nominal orientation survive."""
    e2 = _unit(axis2)
    e0 = _unit(nominal[:, 0] - (nominal[:, 0] @ e2) * e2)
    e1 = _unit(nominal[:, 1] - (nominal[:, 1] @ e2) * e2 - (nominal[:, 1] @ e0) * e0)
    return np.stack([e0, e1, e2], axis=1)


def scanner_grid(profile: CenterProfile, heart: A.Heart, rng: np.random.Generator) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and voxel-to-world affine of one acquisition."""
    nominal = np.array([_AXIS_CODES[c] for c in profile.axcodes], dtype=float).T  # column j: RAS direction of axis j
    spacing = np.asarray(profile.spacing, dtype=float)
    fov = np.asarray(profile.fov, dtype=float)
    if profile.short_axis:
        long_axis = heart.rotation[:, 2]
        if long_axis @ nominal[:, 2] < 0:
            long_axis = -long_axis
        direction = _directions_with_axis2(nominal, long_axis)
        fov[2] = rng.integers(profile.slices[0], profile.slices[1] + 1) * spacing[2]
    elif profile.oblique:
        direction = A.random_rotation(rng, profile.oblique) @ nominal
    else:
        direction = nominal
    shape = tuple(int(v) for v in np.maximum(np.round(fov / spacing), 1))
    focus = heart.la_center if profile.focus == "la" else heart.center
    focus = focus + rng.uniform(-8, 8, size=3)
    if profile.short_axis:  # the stack runs from near the base to near the apex
        focus = heart.center + heart.rotation[:, 2] * (-0.25 * heart.lv_length)
    linear = direction @ np.diag(spacing)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = focus - linear @ ((np.asarray(shape) - 1) / 2)
    return shape, affine


def _world_points(shape, affine, offset_along_2: float = 0.0) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)
    ijk[..., 2] += offset_along_2
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _smooth_field(shape, rng: np.random.Generator, sigma_fraction: float) -> np.ndarray:
    noise = rng.normal(size=shape)
    field = ndimage.gaussian_filter(noise, sigma=[max(n * sigma_fraction, 0.5) for n in shape])
    return field / (np.abs(field).max() + 1e-8)


def render_image(profile: CenterProfile, tissues_fn, shape, affine, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tissue map at voxel centres and the synthesised image (float, scanner units)."""
    tissues = tissues_fn(_world_points(shape, affine))
    # thick slices average what lies inside them (partial volume), so sample within each slice
    offsets = (-1 / 3, 0.0, 1 / 3) if profile.spacing[2] > 3 * min(profile.spacing[:2]) else (0.0,)
    means = CONTRASTS[profile.contrast]
    lookup = np.array([means[t] * profile.contrast_change.get(t, 1.0) for t in range(len(means))], dtype=float)
    lookup *= rng.uniform(0.93, 1.07, size=lookup.shape)  # per-case contrast variation
    image = np.zeros(shape)
    for offset in offsets:
        sub = tissues if offset == 0.0 else tissues_fn(_world_points(shape, affine, offset))
        image += lookup[sub]
    image /= len(offsets)
    image = ndimage.gaussian_filter(image, sigma=(0.6, 0.6, 0.6 if len(offsets) == 1 else 0.0))
    blood = lookup[A.LV]
    if profile.contrast == "CT":
        image += rng.normal(scale=profile.noise, size=shape)
    else:
        texture = 1 + 0.04 * _smooth_field(shape, rng, 0.05)
        bias = np.exp(profile.bias * _smooth_field(shape, rng, 0.35))
        image = image * texture * bias
        sd = profile.noise * blood
        image = np.sqrt((image + rng.normal(scale=sd, size=shape)) ** 2 + rng.normal(scale=sd, size=shape) ** 2)
    return tissues, image


def label_codes(tissues: np.ndarray, layout_key: str) -> np.ndarray:
    """Tissue map -> the layout's label codes, read from the vocabulary."""
    layout = vocabulary.layout(layout_key)
    lookup = np.zeros(int(tissues.max()) + 1 if tissues.size else 1, dtype=np.int16)
    for tissue, keys in A.TISSUE_STRUCTURES.items():
        key = next((k for k in keys if k in layout.structures), None)
        if key is not None and tissue < lookup.size:
            lookup[tissue] = layout.structures[key][0]
    return lookup[tissues]


def render_case(profile: CenterProfile, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image, label, affine)`` of one case, image in the center's dtype, label in int16 codes."""
    heart = A.Heart.sample(rng, center=rng.uniform(-10, 10, size=3), with_scar=profile.task == "myops" or rng.random() < 0.3,
                           long_axis=profile.long_axis)
    shape, affine = scanner_grid(profile, heart, rng)
    tissues, image = render_image(profile, heart.tissues, shape, affine, rng)
    label = label_codes(tissues, profile.layout)
    if profile.zscore_float:
        image = ((image - image.mean()) / image.std()).astype(np.float32)
    elif profile.contrast == "CT":
        image = np.clip(np.round(image), -1024, 3071).astype(np.int16)
    else:
        image = np.clip(np.round(image), 0, 32767).astype(np.int16)
    return image, label, affine
