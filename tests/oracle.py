"""A network that knows the answer, for known-answer tests of the whole prediction path.

``OracleSegmenter`` returns, for each prompt, the reference mask of the structure the prompt
names, as logits of +-20. It cannot see a case's reference through the image (intensities are
normalised and resampled), so ``oracle_volumes`` swaps each whole volume's image, where the
datasets hand it to the module, for a map of voxel addresses on the same preprocessed grid, and
registers the reference resampled onto that grid (nearest neighbour, written here: a resampling
independent of this project's). Everything else runs as users run it: the 2D slice or 3D
sliding-window inferer with its padding and Gaussian blending, mirroring TTA, the return to the
file's grid, thresholding, post-processing, the label map export and the scoring. An address
travels with its voxel through every flip and window, and padding (0) reads as background.

``oracle_volumes(shift=k)`` moves the registered reference k voxels along the first preprocessed
axis: a deliberately wrong oracle, which the known-answer tests must catch.
"""

from __future__ import annotations

import contextlib

import nibabel as nib
import numpy as np
import torch
from torch import nn

import vocabulary
from datamodules import prediction, volumes
from networks.segmenter import PromptSegmenter


class _Registry:
    """Reference label codes of every volume handed out so far, one block of addresses each."""

    def __init__(self):
        self.codes: list[np.ndarray] = []  # per volume, flattened reference codes
        self.layouts: list[str] = []
        self.size = 0
        self._members: dict[str, torch.Tensor] = {}

    def register(self, codes: np.ndarray, layout: str) -> torch.Tensor:
        """Addresses (1-based) of a new volume of ``codes``' shape, as float64 (float32 would
        hold integers exactly only up to 2**24, fewer than a few real volumes have voxels)."""
        start = self.size + 1
        self.size += codes.size
        self.codes.append(codes.ravel())
        self.layouts.append(layout)
        self._members.clear()
        return torch.arange(start, start + codes.size, dtype=torch.float64).reshape(codes.shape)

    def member(self, structure: str) -> torch.Tensor:
        """Per address (index 0 = padding), whether the reference there is ``structure``."""
        if structure not in self._members:
            parts = [np.zeros(1, bool)]
            for codes, layout in zip(self.codes, self.layouts):
                known = vocabulary.annotated(layout, [structure])[0]
                parts.append(vocabulary.binary_masks(codes, layout, [structure])[0] if known
                             else np.zeros(codes.size, bool))
            self._members[structure] = torch.from_numpy(np.concatenate(parts))
        return self._members[structure]


REGISTRY = _Registry()


def structure_named(prompt: str) -> str | None:
    """The structure a prompt names: the longest vocabulary phrasing found in it."""
    text = prompt.lower()
    found = [(len(name), key) for key, structure in vocabulary.STRUCTURES.items()
             for name in structure.names if name.lower() in text]
    return max(found)[1] if found else None


class OracleSegmenter(PromptSegmenter):
    """Logits +-20 of each prompt's reference structure at the addresses in the image (no settings)."""

    def __init__(self):
        nn.Module.__init__(self)  # a PromptSegmenter to the experiment's schema, with nothing of it inside
        self.anchor = nn.Parameter(torch.zeros(()))  # something to save, load and optimise
        self._prompts: list[str | None] = []

    def encode_prompts(self, prompts: list[list[str | None]]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(prompts) != 1:
            raise ValueError("the oracle predicts one volume at a time")
        self._prompts = list(prompts[0])
        padding = torch.tensor([[p is None for p in self._prompts]])
        return torch.zeros(1, len(self._prompts), 1), padding

    def forward(self, image: torch.Tensor, prompt_embeddings: torch.Tensor,
                prompt_padding: torch.Tensor | None = None, all_layers: bool = False) -> torch.Tensor:
        if image.dtype != torch.float64:
            raise TypeError(f"the oracle's addresses reached it as {image.dtype}: something cast the volume")
        address = image[:, 0].round().long()  # [B, *S]
        channels = []
        for prompt in self._prompts:
            structure = structure_named(prompt) if prompt is not None else None
            if structure is None:
                channels.append(torch.zeros_like(address, dtype=torch.bool))
                continue
            member = REGISTRY.member(structure)
            channels.append(member[address.clamp(0, len(member) - 1)] & (address > 0))
        inside = torch.stack(channels, 1)
        logits = torch.where(inside, 20.0, -20.0) + 0 * self.anchor
        return [logits] if all_layers else logits


def nearest_on_grid(codes: np.ndarray, codes_affine: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """``codes`` at the voxel centres of the grid (``shape``, ``affine``), nearest neighbour; 0
    outside. Written out rather than nibabel's ``resample_from_to``, which on a phantom stack kept
    231 of the 2,165 labelled voxels of the last slice, whose centres fall exactly on the file's
    last slice (floating-point rounding at the volume's edge, read as outside)."""
    index = np.indices(shape).reshape(3, -1)
    position = (np.linalg.inv(codes_affine) @ affine @ np.vstack([index, np.ones(index.shape[1])]))[:3]
    nearest = np.floor(position + 0.5).astype(np.int64)
    inside = np.all((nearest >= 0) & (nearest < np.array(codes.shape[:3])[:, None]), axis=0)
    values = np.zeros(index.shape[1], np.int32)
    values[inside] = codes[tuple(nearest[:, inside])]
    return values.reshape(shape)


def _oracle_item(original):
    """``volume_item`` with the image swapped for addresses and the reference registered."""

    def item(case, fields, reference):
        result = original(case, fields, reference)
        label_path = case.case.label or ORACLE_LABELS.get(str(case.case.image))
        if label_path is None:
            raise ValueError(f"the oracle needs the reference of {case.case.image}")
        shape = tuple(case.image.shape[1:])
        label = nib.load(label_path)
        on_grid = nearest_on_grid(np.asanyarray(label.dataobj), label.affine, shape, case.affine)
        if SHIFT[0]:
            on_grid = np.roll(on_grid, SHIFT[0], axis=0)
        addresses = REGISTRY.register(on_grid.astype(np.int32), case.case.layout)
        result["image"] = addresses[None].expand(case.image.shape[0], *shape).clone()
        return result

    return item


ORACLE_LABELS: dict[str, str] = {}  # image path -> reference path, for predictions from unlabelled cases
SHIFT = [0]


@contextlib.contextmanager
def oracle_volumes(monkeypatch, labels: dict[str, str] | None = None, shift: int = 0):
    """Within the block, whole volumes reach the module as address maps (see the module doc)."""
    ORACLE_LABELS.clear()
    ORACLE_LABELS.update(labels or {})
    SHIFT[0] = shift
    monkeypatch.setattr(volumes, "volume_item", _oracle_item(volumes.volume_item))
    monkeypatch.setattr(prediction, "volume_item", _oracle_item(prediction.volume_item))
    try:
        yield REGISTRY
    finally:
        SHIFT[0] = 0
