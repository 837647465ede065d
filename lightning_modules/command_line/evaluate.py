"""``care-cardiac evaluate``: score a folder of predicted label files against reference labels.

    care-cardiac evaluate --task TASK --pred PRED_DIR --ref REF_DIR --out OUT.csv
        [--layout L] [--structures ...] [--center NAME] [--modality M] [--role ID|OOD] [--overwrite]

No model is needed. Files are paired by file name (or by the path below each folder where file
names repeat, as in LAScarQS' ``<case>/atriumSegImgMO.nii.gz``), read in the task's label codes,
and scored on the reference's own grid by the same code as ``test``. Writes OUT.csv (one row
per case and structure), OUT_centers.csv and OUT_leaderboard.csv, and prints the tables.
"""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

import vocabulary
from datamodules.checks import AFFINE_TOLERANCE_MM, corner_shift_mm
from datamodules.files import NIFTI_NAME
from datamodules.geometry import spacing_of
from datamodules.readers import LABEL_FILES
from lightning_modules.evaluation import aggregate
from lightning_modules.evaluation.metrics import score_case
from lightning_modules.evaluation.results_io import write_csv_atomic


def _keyed(root: Path) -> dict[str, Path]:
    """NIfTI files below ``root`` keyed by file name, or by relative path where names repeat."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and NIFTI_NAME.search(p.name)
                   and not p.name.endswith("_probabilities.nii.gz"))
    names = [p.name for p in files]
    unique = len(set(names)) == len(names)
    return {(p.name if unique else p.relative_to(root).as_posix()): p for p in files}


def _pairs(pred_root: Path, ref_root: Path, layout_key: str) -> list[tuple[str, Path, Path]]:
    predictions, references = _keyed(pred_root), _keyed(ref_root)
    if not predictions:
        raise ValueError(f"--pred {pred_root} holds no NIfTI label file")
    if any("/" in k for k in predictions) != any("/" in k for k in references):
        # one side repeats names (per-case folders), the other not: pair both by relative path
        predictions = {p.relative_to(pred_root).as_posix(): p for p in predictions.values()}
        references = {p.relative_to(ref_root).as_posix(): p for p in references.values()}
    missing = [k for k in predictions if k not in references]
    if missing:
        raise ValueError(f"{len(missing)} prediction(s) have no reference of the same name in {ref_root}, "
                         f"e.g. {predictions[missing[0]]}")
    # a reference label without a prediction would silently leave the mean: refuse it
    pattern = LABEL_FILES[layout_key]("*") if layout_key in LABEL_FILES else None
    unpredicted = [k for k in references if k not in predictions and pattern and
                   (fnmatch.fnmatch(k, pattern) or fnmatch.fnmatch(Path(k).name, Path(pattern).name))]
    if unpredicted:
        raise ValueError(f"{len(unpredicted)} reference label(s) have no prediction in {pred_root}, "
                         f"e.g. {references[unpredicted[0]]}")
    return [(key, predictions[key], references[key]) for key in sorted(predictions)]


def _case_id(key: str, layout_key: str) -> str:
    """The case name in a file key: the layout's label naming taken off (``Case3006_gd.nii.gz``
    -> ``Case3006``, ``<case>/atriumSegImgMO.nii.gz`` -> ``<case>``), else the extension."""
    if layout_key in LABEL_FILES:
        ending = LABEL_FILES[layout_key]("")
        if key.endswith(ending) and len(key) > len(ending):
            return key[: -len(ending)]
    return NIFTI_NAME.sub("", key)


def evaluate(task: str, pred_root: Path, ref_root: Path, layout_key: str | None = None,
             structures: list[str] | None = None, center: str | None = None, modality: str | None = None,
             role: str = "unspecified") -> pd.DataFrame:
    """Per-(case, structure) rows of every prediction in ``pred_root`` against ``ref_root``."""
    task_record = vocabulary.task(task)
    layout_key = layout_key or task_record.layout
    structures = list(structures or task_record.structures)
    codes = vocabulary.layout(layout_key)
    missing = [s for s in structures if s not in codes.structures]
    if missing:
        raise ValueError(f"layout {layout_key!r} does not code {missing}")
    center = center or ref_root.resolve().name
    modality = modality or task_record.default_modality
    rows = []
    for key, pred_path, ref_path in _pairs(pred_root, ref_root, layout_key):
        pred_image, ref_image = nib.load(str(pred_path)), nib.load(str(ref_path))
        shape = tuple(ref_image.shape[:3])
        if tuple(pred_image.shape) != tuple(ref_image.shape):
            raise ValueError(f"{pred_path}: shape {pred_image.shape} differs from its reference {ref_path} {ref_image.shape}")
        shift = corner_shift_mm(shape, pred_image.affine, ref_image.affine)
        if shift > AFFINE_TOLERANCE_MM:
            raise ValueError(f"{pred_path}: affine differs from its reference {ref_path} by {shift:.3g} mm")
        predicted = vocabulary.binary_masks(np.asanyarray(pred_image.dataobj), layout_key, structures)
        reference = vocabulary.binary_masks(np.asanyarray(ref_image.dataobj), layout_key, structures)
        case_id = _case_id(key, layout_key)
        identity = {"uid": f"{task}/{center}/{modality}/{case_id}", "case_id": case_id, "task": task,
                    "center": center, "modality": modality, "role": role, "image_path": None,
                    "label_path": str(ref_path), "prediction_path": str(pred_path)}
        rows += score_case(predicted, reference, structures, [True] * len(structures),
                           spacing_of(ref_image.affine), identity)
    return aggregate.rows_frame(rows)


def evaluate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="care-cardiac evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(vocabulary.TASKS))
    parser.add_argument("--pred", required=True, help="folder of predicted label files")
    parser.add_argument("--ref", required=True, help="folder of reference label files")
    parser.add_argument("--out", required=True, help="CSV of per-case rows (aggregates are written beside it)")
    parser.add_argument("--layout", choices=sorted(vocabulary.LAYOUTS), help="label codes (default: the task's)")
    parser.add_argument("--structures", nargs="+", help="structures to score (default: the task's)")
    parser.add_argument("--center", help="center name in the tables (default: the --ref folder's name)")
    parser.add_argument("--modality", help="modality in the tables (default: the task's)")
    parser.add_argument("--role", default="unspecified", choices=["ID", "OOD", "unspecified"],
                        help="whether these cases are in- or out-of-distribution for the model")
    parser.add_argument("--overwrite", action="store_true", help="replace result files that exist")
    args = parser.parse_args(argv)
    out = Path(args.out)
    outputs = [out, out.with_name(f"{out.stem}_centers.csv"), out.with_name(f"{out.stem}_leaderboard.csv")]
    try:
        if out.suffix != ".csv":
            raise ValueError(f"--out must name a .csv file, got {out}")
        existing = [str(p) for p in outputs if p.exists()]
        if existing and not args.overwrite:
            raise ValueError(f"{existing[0]} exists; choose a new --out or pass --overwrite")
        for folder in (args.pred, args.ref):
            if not Path(folder).is_dir():
                raise ValueError(f"{folder} is not a folder")
        frame = evaluate(args.task, Path(args.pred), Path(args.ref), args.layout, args.structures, args.center,
                         args.modality, args.role)
    except ValueError as err:
        parser.error(str(err))
    centers, board = aggregate.center_table(frame), aggregate.leaderboard(frame)
    for table, path in zip((frame, centers, board), outputs):
        write_csv_atomic(table, path)
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 160):
        print(centers.to_string(index=False), "", board.to_string(index=False), sep="\n")
    print(f"\n{frame.uid.nunique()} cases scored; rows: {outputs[0]}")
    return 0
