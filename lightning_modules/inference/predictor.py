"""Whole-volume inference, the one path from a preprocessed volume to masks on the file's grid:
MONAI's inferer over the volume (slice by slice for a 2D model, sliding windows for 3D),
mirroring test-time augmentation, back to the file's grid, then post-processing. Validation,
test, predict, the prompt probe and the benchmarks all call ``WholeVolumePredictor.predict``."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer

from datamodules import geometry
from datamodules.preprocessing import to_original_grid
from lightning_modules.inference.postprocessing import PostProcessing
from networks.segmenter import PromptSegmenter
from vocabulary import prompt

# the sliding windows of every inferer the project builds (nnU-Net's Gaussian blending; overlap 0.25
# chosen on validation: benchmarks/DECISIONS.md, "window overlap 0.5")
WINDOW_BATCH, WINDOW_OVERLAP, WINDOW_BLEND = 32, 0.25, "gaussian"


def default_inferer(patch_size: list[int]) -> Inferer:
    """Training-patch-sized windows, Gaussian weighting, overlap 0.25: slice by slice for a 2D patch."""
    options = {"roi_size": list(patch_size), "sw_batch_size": WINDOW_BATCH, "overlap": WINDOW_OVERLAP,
               "mode": WINDOW_BLEND}
    return SliceInferer(spatial_dim=2, **options) if len(patch_size) == 2 else SlidingWindowInferer(**options)


@dataclass
class PromptSet:
    """One way of asking a case: the structures (``None`` for free text) and their prompts."""

    structures: list[str | None]
    prompts: list[str]


@dataclass
class VolumePrediction:
    """What one prompt set gives on the file's grid.

    Args:
        probabilities: ``[P, *S]`` per prompt, averaged over the mirrored passes.
        masks: binary ``[P, *S]`` after post-processing (read back from ``label`` when there is one).
        label: the label map in the task's codes, or ``None`` unless every prompt is one of
            the task layout's structures.
    """

    probabilities: torch.Tensor
    masks: np.ndarray
    label: np.ndarray | None


class WholeVolumePredictor:
    """Runs a segmenter over whole preprocessed volumes.

    Args:
        net: the segmenter (text-prompt model or fixed-head baseline).
        inferer: a ``SliceInferer`` (2D model, slices across each case's slice axis, wherever the
            array put it) or a ``SlidingWindowInferer`` (3D model).
        tta_axes: array axes to mirror, averaging every combination of flips (a 2D model skips
            its case's slice axis: mirroring the order of slices is a wasted pass).
        postprocessing: threshold, largest component, containment.
    """

    def __init__(self, net: torch.nn.Module, inferer: Inferer, tta_axes: list[int], postprocessing: PostProcessing):
        self.net = net
        self.inferer = inferer
        self.tta_axes = list(tta_axes)
        self.postprocessing = postprocessing

    def _network(self, prompt_sets: list[list[str | None]]):
        """The network as the inferers call it (a window in, logits out), the prompts bound:
        MONAI's SliceInferer drops extra network arguments."""
        encoded = [self.net.encode_prompts([prompts]) for prompts in prompt_sets]
        if len(encoded) == 1:
            return functools.partial(self.net, prompt_embeddings=encoded[0][0], prompt_padding=encoded[0][1])
        if isinstance(self.net, PromptSegmenter):  # one backbone pass per window for every set
            return functools.partial(self.net.forward_prompt_sets, prompt_sets=encoded)
        # the fixed-head baseline has no decoder to share a backbone pass with
        return lambda window: torch.cat([self.net(window, e, p) for e, p in encoded], 1)

    def logits(self, image: torch.Tensor, slice_axis: int, prompt_sets: list[list[str | None]]) -> torch.Tensor:
        """Logits ``[1, P, *S]`` of one preprocessed volume ``[1, C, *S]``, every set decoded on its
        own and concatenated in order (one inferer pass, no mirroring)."""
        network = self._network(prompt_sets)
        if isinstance(self.inferer, SliceInferer):
            moved = image.movedim(2 + slice_axis, 2 + self.inferer.spatial_dim)
            return self.inferer(moved, network).movedim(2 + self.inferer.spatial_dim, 2 + slice_axis)
        return self.inferer(image, network)

    def _probabilities(self, batch: dict, prompt_sets: list[list[str | None]]) -> torch.Tensor:
        image, total, passes = batch["image"], None, 0
        mirrored = self.tta_axes
        if isinstance(self.inferer, SliceInferer):
            mirrored = [axis for axis in self.tta_axes if axis != batch["slice_axis"]]
        for count in range(len(mirrored) + 1):
            for axes in itertools.combinations(mirrored, count):
                dims = [2 + axis for axis in axes]
                logits = self.logits(image.flip(dims) if dims else image, batch["slice_axis"], prompt_sets)
                probabilities = torch.sigmoid(logits[0].float())
                probabilities = probabilities.flip([d - 1 for d in dims]) if dims else probabilities
                total = probabilities if total is None else total + probabilities
                passes += 1
        return to_original_grid(total / passes, batch["affine"], batch["original_shape"], batch["original_affine"])

    @torch.no_grad()
    def predict(self, batch: dict, sets: list[PromptSet] | None = None) -> list[VolumePrediction]:
        """One prediction per prompt set (default: the case's own structures and prompts), all
        decoded from one backbone pass per window.

        A structure asked without its container (scar without myocardium) is cut to the
        container asked alone in the same pass, as the task's full set would cut it.
        """
        sets = sets if sets is not None else [PromptSet(list(batch["structures"]), list(batch["prompts"][0]))]
        keys = [(tuple(s.structures), tuple(s.prompts)) for s in sets]
        # per set, each container it lacks, asked alone by its canonical prompt
        hidden = [{c: ((c,), (prompt(c, batch["modality"]),)) for c in self.postprocessing.missing_containers(s.structures)}
                  for s in sets]
        decoded = list(dict.fromkeys(keys + [key for extra in hidden for key in extra.values()]))  # each set once
        probabilities = self._probabilities(batch, [list(prompts) for _, prompts in decoded])
        by_set = dict(zip(decoded, probabilities.split([len(prompts) for _, prompts in decoded])))
        predictions = []
        for asked, key, extra in zip(sets, keys, hidden):
            containers = {c: by_set[container][0] for c, container in extra.items()}
            label, masks = self.postprocessing(by_set[key], asked.structures, batch.get("task"), containers or None,
                                               geometry.slice_axis(geometry.spacing_of(batch["original_affine"])),
                                               batch.get("modality"))
            predictions.append(VolumePrediction(by_set[key], masks, label))
        return predictions
