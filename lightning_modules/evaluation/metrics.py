"""Per-structure scores on a case's original grid: Dice, HD and HD95 in mm, volumes and the volume
error (predicted minus reference) in ml."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.metrics.utils import get_edge_surface_distance


def volume_ml(mask: np.ndarray, spacing) -> float:
    """A binary mask's volume in ml on a grid of ``spacing`` (mm)."""
    return float(mask.sum()) * float(np.prod(np.asarray(spacing, dtype=float))) / 1000.0


def score_structure(pred: np.ndarray, ref: np.ndarray, spacing) -> dict[str, float]:
    """Dice, HD, HD95 (mm), volumes and volume error (ml) of one binary prediction against its reference.

    MONAI's definitions: distances between boundary voxels, honouring the voxel spacing; HD95 is
    the larger of the two directed 95th percentiles. Empty masks get finite values so no case
    drops out of a mean: both empty -> Dice 1, HD 0, HD95 0; exactly one empty -> Dice 0 and
    HD = HD95 = the image diagonal in mm.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    spacing = np.asarray(spacing, dtype=float)
    volumes = {"pred_ml": volume_ml(pred, spacing), "ref_ml": volume_ml(ref, spacing)}
    volumes["volume_error_ml"] = volumes["pred_ml"] - volumes["ref_ml"]  # signed: over- or under-segmenting
    if not pred.any() and not ref.any():
        return {"dice": 1.0, "hd": 0.0, "hd95": 0.0, **volumes}
    if not pred.any() or not ref.any():
        diagonal = float(np.linalg.norm(np.asarray(pred.shape) * spacing))
        return {"dice": 0.0, "hd": diagonal, "hd95": diagonal, **volumes}
    p, r = torch.from_numpy(pred), torch.from_numpy(ref)
    dice = float(compute_dice(p[None, None].float(), r[None, None].float(), include_background=True)[0, 0])
    _, distances, _ = get_edge_surface_distance(p, r, distance_metric="euclidean", spacing=tuple(spacing), symmetric=True)
    hd = max(float(d.max()) for d in distances)
    hd95 = max(float(torch.quantile(d.double(), 0.95)) for d in distances)
    return {"dice": dice, "hd": hd, "hd95": hd95, **volumes}


def score_case(predicted: np.ndarray, reference: np.ndarray, structures, annotated, spacing,
               identity: dict) -> list[dict]:
    """One row per annotated structure of a case: ``identity`` (ids, center, role...), the
    structure key and its scores. ``test`` and ``care-cardiac evaluate`` both score through here."""
    return [{**identity, "structure": structure, **score_structure(predicted[index], reference[index], spacing)}
            for index, (structure, known) in enumerate(zip(structures, annotated)) if known]
