"""Controls for a failure on an unseen center: the same trained model, the same cases, one
suspect changed at a time, scored as ``care-cardiac test`` scores (original grid, post-processed).

    python benchmarks/shift_controls.py --config EXPERIMENT.yaml --ckpt_path BEST.ckpt \
        --split test --output results/controls.csv [--controls orientation zoom field_of_view] [--phase ED]

Suspects, each a transform of the preprocessed image whose inverse maps the prediction back (so
the reference never moves):
- ``orientation``: the 8 in-plane flips and quarter turns (``d0``..``d7``: ``k`` quarter turns,
  after a flip of the first in-plane axis for ``d4``..``d7``). Exact permutations of voxels.
- ``zoom``: the heart drawn 0.8x and 1.25x as large (a wrong spacing, another body size).
- ``field_of_view``: everything farther than 30 mm from the reference structures set to the
  padding value: the heart handed to the model, no need to find it.
- ``contrast``: intensities remapped, piecewise linearly through each case's mean of the rest, the
  myocardium and the LV blood pool, onto the means given by ``--contrast_target`` (another
  center's, from its ``intensity`` rows): that center's contrast, the anatomy kept.
- ``gamma``: intensities through a power curve (``GAMMAS``) on the volume's range, z-scored again
  as preprocessing does: darker or brighter mid-tones, the anatomy and the order of intensities kept.
- ``intensity``: no prediction; the mean normalised intensity of each structure and of the rest
  (rows with ``control`` ``intensity``), to compare contrast between centers and sequences.
Every suspect but ``orientation`` runs at each case's best orientation for LV Dice as well as
as given (``orientation`` column), so a contrast or scale effect is not hidden behind a turn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trained_model import mask_on_grid, trained_experiment  # noqa: E402

from datamodules.collate import collate_volume  # noqa: E402
from datamodules.geometry import spacing_of  # noqa: E402
from datamodules.preprocessing import PAD_VALUE  # noqa: E402
from datamodules.volumes import VolumeDataset  # noqa: E402
from lightning_modules.evaluation.metrics import score_case  # noqa: E402
from lightning_modules.evaluation.results_io import unused_path, write_csv_atomic  # noqa: E402
from lightning_modules.inference.predictor import WholeVolumePredictor  # noqa: E402

MARGIN_MM = 30.0
ZOOMS = (0.8, 1.25)
GAMMAS = (0.67, 1.5)


class ShiftedPredictor(WholeVolumePredictor):
    """The model's predictor with its network input transformed and its logits mapped back."""

    def __init__(self, base: WholeVolumePredictor):
        super().__init__(base.net, base.inferer, base.tta_axes, base.postprocessing)
        self.forward_transform = self.inverse_transform = lambda tensor, axes: tensor

    def logits(self, image, slice_axis, prompt_sets):
        axes = [2 + a for a in range(3) if a != slice_axis]
        logits = super().logits(self.forward_transform(image, axes), slice_axis, prompt_sets)
        return self.inverse_transform(logits, axes)


def dihedral(index: int):
    turns, flip = index % 4, index >= 4

    def forward(tensor, axes):
        tensor = tensor.flip(axes[0]) if flip else tensor
        return torch.rot90(tensor, turns, dims=axes)

    def inverse(tensor, axes):
        tensor = torch.rot90(tensor, -turns, dims=axes)
        return tensor.flip(axes[0]) if flip else tensor
    return forward, inverse


def zoom(factor: float):
    def resize(tensor, axes, size):
        shape = list(tensor.shape[2:])
        for axis, n in zip(axes, size):
            shape[axis - 2] = n
        return F.interpolate(tensor.float(), size=shape, mode="trilinear", align_corners=False)

    sizes = {}

    def forward(tensor, axes):
        sizes["in"] = [tensor.shape[a] for a in axes]
        return resize(tensor, axes, [max(1, round(n * factor)) for n in sizes["in"]])

    def inverse(tensor, axes):
        return resize(tensor, axes, sizes["in"])
    return forward, inverse


def reference_on_grid(batch: dict) -> np.ndarray:
    """Union of the reference structures on the preprocessed grid (nearest neighbour)."""
    return mask_on_grid(batch, np.asarray(batch["reference"]).any(0))


def field_of_view(batch: dict, inside: np.ndarray):
    """Outside a box around the reference (``MARGIN_MM``) set to the padding value."""
    spacing = spacing_of(batch["affine"])
    box = np.zeros_like(inside)
    where = np.argwhere(inside)
    if len(where):
        margin = np.ceil(MARGIN_MM / spacing).astype(int)
        low, high = np.maximum(where.min(0) - margin, 0), where.max(0) + margin + 1
        box[tuple(slice(a, b) for a, b in zip(low, high))] = True
    keep = torch.from_numpy(box)

    def forward(tensor, axes):
        return torch.where(keep, tensor, torch.full_like(tensor, PAD_VALUE))
    return forward, lambda tensor, axes: tensor


def gamma(power: float):
    def forward(tensor, axes):
        low, high = tensor.amin(), tensor.amax()
        curved = ((tensor - low) / (high - low)).clamp(0, 1) ** power
        return (curved - curved.mean()) / curved.std()

    return forward, lambda tensor, axes: tensor


def contrast(means: dict[str, float], target: dict[str, float]):
    """Piecewise-linear intensity map through the case's (rest, myo, lv) means onto ``target``'s."""
    keys = sorted(("rest", "myo", "lv"), key=lambda k: means[k])
    source = torch.tensor([means[k] for k in keys])
    goal = torch.tensor([target[k] for k in keys])

    def forward(tensor, axes):
        out = torch.empty_like(tensor)
        low = tensor <= source[1]
        for part, (a, b) in ((low, (0, 1)), (~low, (1, 2))):  # each segment's line, extended past its ends
            slope = (goal[b] - goal[a]) / (source[b] - source[a])
            out[part] = goal[a] + slope * (tensor[part] - source[a])
        return out
    return forward


def intensity_rows(batch: dict, identity: dict) -> list[dict]:
    image = batch["image"][0, 0].numpy()
    rows, union = [], np.zeros(image.shape, dtype=bool)
    reference = np.asarray(batch["reference"])
    for index, (structure, known) in enumerate(zip(batch["structures"], batch["annotated"])):
        if not known:
            continue
        single = {**batch, "reference": reference[index:index + 1]}
        mask = reference_on_grid(single)
        union |= mask
        rows.append({**identity, "control": "intensity", "structure": structure, "mean": float(image[mask].mean())})
    rows.append({**identity, "control": "intensity", "structure": "rest", "mean": float(image[~union].mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--controls", nargs="+", default=["orientation", "zoom", "field_of_view", "intensity"])
    parser.add_argument("--phase", help="only cases of this cardiac phase (ACDC: ED or ES)")
    parser.add_argument("--orientations", nargs="+", type=int, default=list(range(8)),
                        help="the orientations tried (0-7), the best of them used for the other suspects")
    parser.add_argument("--contrast_target", default="rest=-0.05,myo=0.96,lv=2.35",
                        help="mean normalised intensities the contrast control maps onto (default: MyoPS C0 validation)")
    args, cli = trained_experiment(argv, parser)
    predictor = ShiftedPredictor(cli.model.predictor)
    target = {k: float(v) for k, v in (pair.split("=") for pair in args.contrast_target.split(","))}
    rows: list[dict] = []

    def run(batch, identity, control, orientation, transforms):
        predictor.forward_transform, predictor.inverse_transform = transforms
        masks = predictor.predict(batch)[0].masks
        scored = score_case(masks, batch["reference"], batch["structures"], batch["annotated"],
                            spacing_of(batch["original_affine"]), {**identity, "control": control,
                                                                   "orientation": orientation})
        rows.extend(scored)
        return {row["structure"]: row["dice"] for row in scored}

    cases = [c for c in cli.datamodule.cases(args.split) if args.phase is None or c.case.phase == args.phase]
    for item in VolumeDataset(cases):
        batch = collate_volume([item])
        identity = {key: batch[key] for key in ("uid", "case_id", "subject", "phase", "task", "center", "modality", "role")}
        lv = {}
        for index in (args.orientations if "orientation" in args.controls else [0]):
            lv[index] = run(batch, identity, "orientation", f"d{index}", dihedral(index)).get("lv", 0.0)
        best = max(lv, key=lv.get)
        crop = field_of_view(batch, reference_on_grid(batch)) if "field_of_view" in args.controls else None
        for orientation in dict.fromkeys([0, best]):
            base = dihedral(orientation)
            if "zoom" in args.controls:
                for factor in ZOOMS:
                    inner = zoom(factor)
                    run(batch, identity, f"zoom {factor}", f"d{orientation}",
                        (lambda t, a, f=inner[0]: f(base[0](t, a), a), lambda t, a, i=inner[1]: base[1](i(t, a), a)))
            if "gamma" in args.controls:
                for power in GAMMAS:
                    inner = gamma(power)[0]
                    run(batch, identity, f"gamma {power}", f"d{orientation}",
                        (lambda t, a, f=inner: f(base[0](t, a), a), base[1]))
            if crop is not None:
                run(batch, identity, "field of view", f"d{orientation}",
                    (lambda t, a, c=crop[0]: base[0](c(t, a), a), base[1]))
        intensities = intensity_rows(batch, identity) if {"contrast", "intensity"} & set(args.controls) else []
        if "contrast" in args.controls:
            remap = contrast({row["structure"]: row["mean"] for row in intensities}, target)
            base = dihedral(best)
            run(batch, identity, "contrast", f"d{best}", (lambda t, a, r=remap: base[0](r(t, a), a), base[1]))
        if "intensity" in args.controls:
            rows.extend(intensities)
        print(f"{item['case_id']} ({item['modality']}): LV Dice by orientation "
              + " ".join(f"{v:.2f}" for v in lv.values()), flush=True)
    frame = pd.DataFrame(rows)
    path = write_csv_atomic(frame, unused_path(args.output))
    scored = frame[frame.control != "intensity"]
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(scored.pivot_table(index=["center", "modality", "control", "orientation"], columns="structure",
                                 values="dice", aggfunc="mean").to_string())
        if "intensity" in args.controls:
            print(frame[frame.control == "intensity"].pivot_table(index=["center", "modality"], columns="structure",
                                                                   values="mean", aggfunc="mean").to_string())
    print(f"rows written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
