"""From per-prompt probabilities to the final masks and label map: one configured object, shared
by validation, test and predict, so what is scored is what is exported."""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import KeepLargestConnectedComponent
from scipy.ndimage import binary_fill_holes
from skimage.morphology import convex_hull_image

import vocabulary
from lightning_modules.inference.label_maps import compose_label_map


def filled_cavity(cavity: np.ndarray, wall: np.ndarray, slice_axis: int) -> np.ndarray:
    """The cavity with, in each slice, its convex hull wherever the heart (cavity, wall and the
    holes they enclose) lies: the papillary muscles and trabeculae that jut into the blood pool.

    Written here because no library step says "a cavity is what its wall encloses": MONAI's
    ``FillHoles`` fills closed holes only, and these structures touch the wall.
    """
    filled = cavity.copy()
    for index in range(cavity.shape[slice_axis]):
        cut = [slice(None)] * cavity.ndim
        cut[slice_axis] = index
        cut = tuple(cut)
        if cavity[cut].any():
            heart = binary_fill_holes(cavity[cut] | wall[cut])
            filled[cut] |= convex_hull_image(cavity[cut]) & heart
    return filled


class PostProcessing:
    """Threshold, nnU-Net's largest-component cleanup, the label hierarchy, the label map.

    Args:
        threshold: probability above which a voxel belongs to the prompted structure.
        largest_component: structure keys cut to their largest connected component (MONAI
            ``KeepLargestConnectedComponent``), for single-region structures (default: every
            chamber, the myocardium and the vessels); never scar or edema, which may be several
            regions.
        contained_in: structure -> the structure that contains it (``{scar: myo}``): its mask is
            cut to the container's final mask when both are prompted, as the label hierarchy
            says (MyoPS scar lies inside the myocardium), which removes stray detections. When
            a structure is asked without its container, the container's probabilities can be
            passed in (``containers``) so the structure is cut the same way as in its full set.
        cavities: cavity -> its wall (``{lv: myo}``): when both are asked, the cavity takes, in
            each slice, what its wall encloses (``filled_cavity``), which the wall loses: ACDC and
            MyoPS draw the papillary muscles and trabeculae inside the blood pool.
        cavity_modalities: the sequences whose cavities are filled (``None``: every one). Cine
            (bright blood) shows the papillary muscles dark, where a model trained on LGE puts
            them in the wall; on LGE the hull would take subendocardial scar.
    """

    def __init__(self, threshold: float = 0.5,
                 largest_component: list[str] | None = ("lv", "rv", "la", "ra", "myo", "aorta", "pa"),
                 contained_in: dict[str, str] | None = {"scar": "myo"},  # noqa: B006 (copied below, never mutated)
                 cavities: dict[str, str] | None = None, cavity_modalities: list[str] | None = None):
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.largest_component = set(largest_component or [])
        unknown = self.largest_component - set(vocabulary.STRUCTURES)
        if unknown:
            raise ValueError(f"largest_component names unknown structures {sorted(unknown)}; "
                             f"known: {sorted(vocabulary.STRUCTURES)}")
        self.contained_in = dict(contained_in or {})
        unknown = (set(self.contained_in) | set(self.contained_in.values())) - set(vocabulary.STRUCTURES)
        if unknown:
            raise ValueError(f"contained_in names unknown structures {sorted(unknown)}")
        self.cavities = dict(cavities or {})
        unknown = (set(self.cavities) | set(self.cavities.values())) - set(vocabulary.STRUCTURES)
        if unknown:
            raise ValueError(f"cavities names unknown structures {sorted(unknown)}")
        self.cavity_modalities = None if cavity_modalities is None else set(cavity_modalities)
        for modality in self.cavity_modalities or ():
            vocabulary.modality(modality)
        self._keep_largest = KeepLargestConnectedComponent(applied_labels=[1], is_onehot=False)

    def missing_containers(self, structures: list[str | None]) -> list[str]:
        """Containers (``contained_in``) of the asked structures that were not asked themselves."""
        missing = [self.contained_in[s] for s in structures if s in self.contained_in]
        return [c for c in dict.fromkeys(missing) if c not in structures]

    def _binary(self, probabilities: torch.Tensor, structure: str | None) -> torch.Tensor:
        predicted = probabilities > self.threshold
        if structure in self.largest_component and predicted.any():
            predicted = self._keep_largest(predicted[None].to(torch.uint8))[0].bool()
        return predicted

    def masks(self, probabilities: torch.Tensor, structures: list[str],
              containers: dict[str, torch.Tensor] | None = None, slice_axis: int = 2,
              modality: str | None = None) -> torch.Tensor:
        """Binary masks ``[P, *S]``: thresholded, largest components kept, cavities filled
        (slices across ``slice_axis``), contained structures cut to their container, asked (in
        ``structures``) or given as ``containers`` (structure -> probabilities) for this purpose only."""
        predicted = torch.stack([self._binary(p, s) for p, s in zip(probabilities, structures)])
        fills = self.cavity_modalities is None or modality in self.cavity_modalities
        for cavity, wall in self.cavities.items() if fills else ():
            if cavity in structures and wall in structures:
                inner, outer = structures.index(cavity), structures.index(wall)
                predicted[inner] = torch.from_numpy(filled_cavity(predicted[inner].numpy(), predicted[outer].numpy(),
                                                                  slice_axis))
                predicted[outer] &= ~predicted[inner]
        extra = {key: self._binary(p, key) for key, p in (containers or {}).items()}
        for index, structure in enumerate(structures):
            container = self.contained_in.get(structure)
            # free-text prompts have no structure (None): without the first test, `None in
            # structures` held for them and every prompt was cut to the first one's mask
            if container is not None and container in structures:
                predicted[index] &= predicted[structures.index(container)]
            elif container is not None and container in extra:
                predicted[index] &= extra[container]
        return predicted

    def __call__(self, probabilities: torch.Tensor, structures: list[str], task: str | None,
                 containers: dict[str, torch.Tensor] | None = None,
                 slice_axis: int = 2, modality: str | None = None) -> tuple[np.ndarray | None, np.ndarray]:
        """The label map in the task's codes (``None`` unless every prompt is one of the task
        layout's structures) and the binary masks ``[P, *S]``; with a label map, the masks are
        read back from it (overlaps to the most probable structure, overlays such as scar
        written last), so they are exactly what an exported file holds."""
        structures = list(structures)
        predicted = self.masks(probabilities, structures, containers, slice_axis, modality).numpy()
        layout = vocabulary.TASKS[task].layout if task in vocabulary.TASKS else None
        if layout is None or not all(s in vocabulary.LAYOUTS[layout].structures for s in structures):
            return None, predicted
        label = compose_label_map(predicted, structures, layout, probabilities.numpy())
        return label, vocabulary.binary_masks(label, layout, structures)
