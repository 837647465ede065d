"""Training patches: label-aware TorchIO sampling on preprocessed cases, then augmentation."""

from __future__ import annotations

import random

import numpy as np
import torch
import torchio as tio
from torch.utils.data import Dataset

import vocabulary
from datamodules.preprocessing import PAD_VALUE, PreprocessedCase
from datamodules.prompts import prompt_fields
from datamodules.sampling import PatchDraw
from datamodules.transforms.augmentation import Augmentation


def _centre_bounds(box, shape) -> list[tuple[int, int]]:
    """Per axis, the first and last voxel a patch of ``box`` can be centred on inside ``shape``
    (a patch starts ``size // 2`` voxels before its centre)."""
    return [(size // 2, extent - size + size // 2) for size, extent in zip(box, shape)]


def _volume_index(flat: torch.Tensor, bounds, shape) -> torch.Tensor:
    """Flat indices into the box ``bounds`` (per axis, first and last voxel) -> flat indices
    (int32) into the volume of ``shape``; C order is kept, so sorted indices stay sorted."""
    (x0, _), (y0, y1), (z0, z1) = bounds
    height, depth = y1 - y0 + 1, z1 - z0 + 1
    x, y, z = flat // (height * depth), flat // depth % height, flat % depth
    return (((x + x0) * shape[1] + (y + y0)) * shape[2] + (z + z0)).to(torch.int32)


class PatchDataset(Dataset):
    """``PatchDraw(case, seed)`` -> the patch of case ``case`` that ``seed`` picks (the sampler
    decides which cases, and hands out the seeds); a plain index ``i`` -> a random patch of
    case ``i``, drawn from torch's global RNG.

    For 2D models (``len(patch_size) == 2``) a patch is one slice taken across the case's slice
    axis, which comes from the spacing; for 3D models a box. A ``foreground_fraction`` of patches
    is centred on an annotated structure (the rule of TorchIO's ``LabelSampler``, with candidates cached per case).

    Args:
        cases: preprocessed training cases.
        patch_size: in-plane size ``[H, W]`` (2D) or ``[X, Y, Z]`` (3D), in voxels.
        foreground_fraction: share of patches centred on foreground.
        augmentation: random transforms, or ``None``.
        synonym_probability: chance that a prompt is phrased with a random synonym.
        wording_probability: chance that a prompt is written in a random sentence frame and
            modality wording (``vocabulary.PROMPT_TEMPLATES``).
    """

    def __init__(self, cases: list[PreprocessedCase], patch_size: list[int], foreground_fraction: float = 0.67,
                 augmentation: Augmentation | None = None, synonym_probability: float = 0.5,
                 wording_probability: float = 0.5):
        if len(patch_size) not in (2, 3):
            raise ValueError(f"patch_size must have 2 (2D) or 3 (3D) entries, got {patch_size}")
        if not 0 <= foreground_fraction <= 1:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        self.cases = cases
        self.patch_size = list(patch_size)
        self.augmentation = augmentation
        self.synonym_probability = synonym_probability
        self.wording_probability = wording_probability
        self.foreground_fraction = foreground_fraction
        self._subjects: dict[int, tio.Subject] = {}
        self._probabilities: dict[int, dict[int, float]] = {}  # per case: sampling chance of each map value
        self._transforms: dict[tuple[int, str], tio.Transform] = {}  # per slice axis and layout, built once
        self._centre_index: dict[int, list] = {}  # per case: patch-centre candidates per structure value

    def __len__(self) -> int:
        return len(self.cases)

    def box(self, case: PreprocessedCase) -> tuple[int, int, int]:
        """Patch shape in array order: for 2D, size 1 along the case's slice axis."""
        if len(self.patch_size) == 3:
            return tuple(self.patch_size)
        in_plane = iter(self.patch_size)
        return tuple(1 if axis == case.slice_axis else next(in_plane) for axis in range(3))

    def subject(self, index: int) -> tio.Subject:
        """The case as a TorchIO subject, padded up to the patch size (with ``PAD_VALUE``, as
        the inferers pad), with a map of structure
        indices (1..K; a structure nested in another, like scar in myocardium, overwrites it)."""
        if index not in self._subjects:
            case = self.cases[index]
            known = [key for key in vocabulary.annotated_structures(case.case.layout, case.case.task, trained=True)
                     if case.case.trains(key)]
            structure_map = np.zeros(case.label.shape, dtype=np.uint8)
            for k, mask in enumerate(vocabulary.binary_masks(case.label.numpy(), case.case.layout, known), start=1):
                structure_map[mask] = k
            subject = tio.Subject(
                image=tio.ScalarImage(tensor=case.image, affine=case.affine),
                label=tio.LabelMap(tensor=case.label[None], affine=case.affine),
                structures=tio.LabelMap(tensor=torch.from_numpy(structure_map[None]), affine=case.affine),
            )
            share = self.foreground_fraction / max(len(known), 1)
            self._probabilities[index] = {0: 1 - self.foreground_fraction, **{k: share for k in range(1, len(known) + 1)}}
            shortfall = [max(p - s, 0) for p, s in zip(self.box(case), subject.spatial_shape)]
            if any(shortfall):
                padding = [v for d in shortfall for v in (d // 2, d - d // 2)]
                # image and maps alike: label and structure maps pad with 0 (background) too
                subject = tio.Pad(padding, padding_mode=PAD_VALUE)(subject)
            self._subjects[index] = subject
        return self._subjects[index]

    def _centres(self, index: int, box: tuple[int, ...]) -> list[tuple[int, float, torch.Tensor | None]]:
        """Per value of the structure map with a positive sampling chance: the value, its chance,
        and the flat indices of the voxels where a patch centred there fits (``None`` for a value
        covering more than a quarter of those voxels: it is drawn by rejection instead, so the
        background of a CT-sized volume costs no index list). Computed once per case, as MONAI's
        ``RandCropByLabelClasses`` caches its indices; TorchIO's ``LabelSampler``, which this
        replaces, rebuilt a probability map and its float64 cumulative sum for every patch."""
        if index not in self._centre_index:
            structures = self.subject(index)["structures"].data[0]
            bounds = _centre_bounds(box, structures.shape)
            # only the box of voxels where a patch fits is searched (a 3D patch on a 5-slice
            # stack padded to 96 slices fits at one slice of the 96); its C-order voxels map to
            # the volume's flat indices in the same order
            fits = structures[tuple(slice(low, high + 1) for low, high in bounds)].contiguous()
            total = fits.numel()
            entries = []
            for value, chance in self._probabilities[index].items():
                if chance <= 0:
                    continue
                where = (fits == value).flatten()
                count = int(where.sum())
                if count:
                    indices = None if count > total // 4 else \
                        _volume_index(where.nonzero()[:, 0], bounds, structures.shape)
                    entries.append((value, chance, indices))
            if not entries:
                raise ValueError(f"case {self.cases[index].case.uid}: no voxel to centre a {list(box)} patch on")
            self._centre_index[index] = entries
        return self._centre_index[index]

    def _corner(self, index: int, box: tuple[int, ...]) -> tuple[int, ...]:
        """The first voxel of a patch: a structure-map value drawn by its chance (renormalised over
        the values present), then a voxel of that value uniformly, as ``LabelSampler`` draws
        (each value's chance is its total, however many voxels it has), from torch's RNG."""
        entries = self._centres(index, box)
        chances = torch.tensor([chance for _, chance, _ in entries], dtype=torch.float64)
        value, _, indices = entries[int(torch.multinomial(chances, 1))]
        structures = self.subject(index)["structures"].data[0]
        shape = structures.shape
        if indices is not None:
            flat = int(indices[int(torch.randint(len(indices), ()))])
            centre = np.unravel_index(flat, shape)
        else:  # a common value: draw voxels where a patch fits until one has it
            bounds = _centre_bounds(box, shape)
            while True:
                centre = tuple(int(torch.randint(low, high + 1, ())) for low, high in bounds)
                if int(structures[centre]) == value:
                    break
        return tuple(int(c) - p // 2 for c, p in zip(centre, box))

    def __getitem__(self, draw: PatchDraw | int) -> dict:
        if isinstance(draw, int):
            return self._patch(draw)
        index, seed = draw
        # TorchIO draws positions and transform parameters from torch's global CPU RNG: run it
        # from the patch's own seed and give the caller's RNG back untouched
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self._patch(index)

    def _patch(self, index: int) -> dict:
        case = self.cases[index]
        box = self.box(case)
        subject = self.subject(index)
        start = self._corner(index, box)
        crop = tuple(slice(a, a + n) for a, n in zip(start, box))
        affine = subject["image"].affine.copy()
        affine[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=float) + affine[:3, 3]  # the patch's own origin
        patch = tio.Subject(image=tio.ScalarImage(tensor=subject["image"].data[(slice(None), *crop)], affine=affine),
                            label=tio.LabelMap(tensor=subject["label"].data[(slice(None), *crop)], affine=affine))
        if self.augmentation is not None:
            key = (case.slice_axis, case.case.layout)
            if key not in self._transforms:
                cavity = vocabulary.layout(case.case.layout).structures.get("lv", ())
                self._transforms[key] = self.augmentation.transform(case.slice_axis, cavity_codes=tuple(cavity))
            patch = self._transforms[key](patch)
        image, label = patch["image"].data, patch["label"].data[0]
        if len(self.patch_size) == 2:
            image, label = image.squeeze(1 + case.slice_axis), label.squeeze(case.slice_axis)
        # prompt phrasing is drawn from torch's RNG too, so the patch's seed fixes it
        fields = prompt_fields(case.case, random.Random(int(torch.randint(0, 2**31 - 1, ()).item())),
                               self.synonym_probability, self.wording_probability)
        target = vocabulary.binary_masks(label.numpy(), case.case.layout,
                                         [s for s, a in zip(fields["structures"], fields["annotated"]) if a])
        full = torch.zeros((len(fields["structures"]), *label.shape))
        full[torch.tensor(fields["annotated"])] = torch.from_numpy(target).float()
        return {
            "image": image.float(), "target": full, "prompt_mask": torch.tensor(fields["annotated"]),
            "prompts": fields["prompts"], "structures": fields["structures"],
            "task": case.case.task, "center": case.case.center, "modality": case.case.modality,
            "case_id": case.case.case_id,
        }
