"""Per-structure masks -> one label map in a layout's own codes (the inverse of ``binary_masks``).

This is how predictions are exported and, in ``test``, what is scored: a voxel claimed by
several structures goes to the one with the highest probability, and a layout's overlays
(MyoPS edema, then scar) are written over the structures that contain them.
"""

from __future__ import annotations

import numpy as np

import vocabulary


def label_dtype(max_code: int) -> np.dtype:
    """The smallest integer type that holds the codes (uint8 for LAScarQS' 255, int16 for MyoPS' 2221)."""
    return np.dtype(np.uint8) if max_code <= np.iinfo(np.uint8).max else np.dtype(np.int16)


def _paint(masks: np.ndarray, probabilities: np.ndarray | None, codes: list[int], shape) -> np.ndarray:
    """Codes of overlapping masks, the most probable structure winning (first listed without probabilities).

    One structure at a time with a running maximum, so memory stays at one volume however many
    structures there are (a CT at 512x512x200 with 7 structures would need 1.5 GB per temporary).
    """
    label = np.zeros(shape, dtype=label_dtype(max(codes, default=0)))
    if probabilities is None:
        for index in reversed(range(len(codes))):  # the first listed is painted last, so it wins
            label[masks[index]] = codes[index]
        return label
    best = np.full(shape, -np.inf, dtype=np.float32)
    for index, code in enumerate(codes):
        better = masks[index] & (probabilities[index] > best)
        best[better] = probabilities[index][better]
        label[better] = code
    return label


def compose_label_map(masks: np.ndarray, structures: list[str], layout_key: str,
                      probabilities: np.ndarray | None = None) -> np.ndarray:
    """One label map in ``layout_key``'s codes from binary masks ``[P, *S]`` of ``structures``.

    Args:
        masks: binary masks, one per structure.
        structures: structure keys, all annotated by the layout.
        layout_key: layout whose export codes are written (the first code of each structure).
        probabilities: per-structure probabilities ``[P, *S]`` that settle overlaps; without
            them the structure listed first wins.
    """
    codes = vocabulary.layout(layout_key)
    missing = [key for key in structures if key not in codes.structures]
    if missing:
        raise ValueError(f"layout {layout_key!r} has no code for {missing}; it codes {sorted(codes.structures)}")
    if masks.shape[0] != len(structures):
        raise ValueError(f"{masks.shape[0]} masks for {len(structures)} structures")
    base = [i for i, key in enumerate(structures) if key not in codes.overlays]
    label = _paint(masks[base], None if probabilities is None else probabilities[base],
                   [codes.structures[structures[i]][0] for i in base], masks.shape[1:])
    all_codes = [codes.structures[key][0] for key in structures]
    label = label.astype(label_dtype(max(all_codes, default=0)), copy=False)
    for overlay in codes.overlays:  # in the layout's order: later overlays win
        if overlay in structures:
            label[masks[structures.index(overlay)]] = codes.structures[overlay][0]
    return label


def compose_prompt_map(masks: np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray:
    """Free-text prompts have no layout: prompt ``i`` is written as code ``i + 1``, overlaps to the most probable."""
    return _paint(masks, probabilities, list(range(1, masks.shape[0] + 1)), masks.shape[1:])
