"""Known answers through the path users run: with a network that returns each case's own
reference (``tests.oracle``), ``test`` and ``predict`` + ``evaluate`` must score it as perfect,
and a shifted oracle must fail.

Two settings of the same experiments:
- **Not resampled** (``spacing_tolerance 0.99``: every axis keeps its own spacing, so the
  training grid is the file's grid reoriented): the reference must come back exactly, Dice 1 and
  HD 0 for every structure. This holds through oblique scanner affines, the inferers' windows and
  padding, mirroring TTA, post-processing and the label map export.
- **Resampled as the experiment is configured**: the reference goes to the coarser training grid
  and back, which must lose up to about one training voxel at each boundary. The bound tested:
  HD95 at most the diagonal of a training voxel over the resampled axes (a boundary voxel can
  move by up to one voxel on each), and Dice at least 0.9 (thin parts of a structure, thinner than
  a voxel, can vanish).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from lightning_modules.command_line.main import main
from tests.oracle import oracle_volumes
from tests.test_cli import CONFIG, CSV_ONLY, SMALL

ORACLE = ["--model.net", "tests.oracle.OracleSegmenter"]
NOT_RESAMPLED = ["--data.preprocessing.spacing_tolerance", "0.99"]
# resampled phantoms: the training grid's spacing per task (experiments/phantoms.yaml) and the
# largest HD95 that one voxel's move on each resampled axis allows
TRAINING_SPACING = {"la": 1.5, "whs": 2.0, "myops": 1.25}


def scored_rows(folder) -> pd.DataFrame:
    tables = list((folder / "results").rglob("test_cases.csv"))
    assert len(tables) == 1, tables
    return pd.read_csv(tables[0])


def assert_exact(rows: pd.DataFrame) -> None:
    wrong = rows[(rows.dice != 1.0) | (rows.hd != 0)]
    assert wrong.empty, wrong[["case_id", "structure", "dice", "hd"]].to_string()


def assert_within_a_voxel(rows: pd.DataFrame) -> None:
    for row in rows.itertuples():
        bound = TRAINING_SPACING[row.task] * (3 if row.task != "myops" else 2) ** 0.5  # MyoPS keeps its slices
        assert row.dice >= 0.9 and row.hd95 <= bound + 1e-6, (row.case_id, row.structure, row.dice, row.hd95, bound)


@pytest.mark.slow
def test_oracle_phantoms_2d_exact_and_within_a_voxel_when_resampled(in_run_folder, monkeypatch):
    # mirroring TTA on every axis: each pass must come back to the same voxels
    with oracle_volumes(monkeypatch):
        main(["test", "--config", CONFIG, *SMALL, *CSV_ONLY, *ORACLE, *NOT_RESAMPLED, "--model.tta_axes", "[0, 1, 2]",
              "--trainer.logger.version", "exact"])
        main(["test", "--config", CONFIG, *SMALL, *CSV_ONLY, *ORACLE, "--trainer.logger.version", "resampled"])
    exact = pd.read_csv(in_run_folder / "results" / "lightning_logs" / "exact" / "test_cases.csv")
    assert exact.uid.nunique() == 10 and set(exact.task) == {"la", "whs", "myops"}
    assert_exact(exact)
    resampled = pd.read_csv(in_run_folder / "results" / "lightning_logs" / "resampled" / "test_cases.csv")
    assert len(resampled) == len(exact)
    assert_within_a_voxel(resampled)
    assert (resampled.dice < 1).any()  # the bound is used: resampling did lose something


@pytest.mark.slow
def test_oracle_shifted_by_two_voxels_fails(in_run_folder, monkeypatch):
    with oracle_volumes(monkeypatch, shift=2):
        main(["test", "--config", CONFIG, *SMALL, *CSV_ONLY, *ORACLE, *NOT_RESAMPLED])
    rows = scored_rows(in_run_folder)
    with pytest.raises(AssertionError):
        assert_exact(rows)
    with pytest.raises(AssertionError):
        assert_within_a_voxel(rows)


@pytest.mark.slow
def test_oracle_predict_then_evaluate_is_exact_and_free_text_finds_the_structure(in_run_folder, monkeypatch,
                                                                                   phantom_root):
    checkpoint = in_run_folder / "oracle.ckpt"
    torch.save({"state_dict": {"net.anchor": torch.zeros(())}}, checkpoint)
    predict = ["predict", "--config", CONFIG, *SMALL, *ORACLE, *NOT_RESAMPLED, "--ckpt_path", str(checkpoint)]
    center = phantom_root / "myops" / "myops_c2" / "test"  # oblique LSP/PSR stacks, as the real MyoPS files
    images = sorted(center.rglob("*_LGE.nii.gz"))
    # a prediction never reads labels, so the oracle is told where the references are
    labels = {str(image): str(image).replace("_LGE", "_gd") for image in images}
    labels.update({str(image): str(image).replace("_image", "_label")
                   for image in (phantom_root / "whs" / "whs_ct_a" / "test").rglob("*_image.nii.gz")})
    with oracle_volumes(monkeypatch, labels=labels):
        assert main([*predict, "--split", "test", "--center", "myops_c2", "whs_ct_a", "--output", "pred"]) == 0
        assert main([*predict, "--input", str(images[0]), "--task", "myops", "--output", "free",
                     "--prompts", "infarcted myocardial scar", "the LV blood pool cavity"]) == 0
    for task, name in (("myops", "myops_c2"), ("whs", "whs_ct_a")):
        assert main(["evaluate", "--task", task, "--pred", f"pred/{task}/{name}", "--out", f"{name}.csv",
                     "--ref", str(phantom_root / task / name / "test"), "--center", name]) == 0
        assert_exact(pd.read_csv(in_run_folder / f"{name}.csv"))
    # free text: codes 1, 2 in prompt order, each the structure it names
    written = np.asanyarray(nib.load(next((in_run_folder / "free").rglob("*.nii.gz"))).dataobj)
    reference = np.asanyarray(nib.load(labels[str(images[0])]).dataobj)
    assert json.loads((in_run_folder / "free" / "prediction.json").read_text())["codes"]["1"] == "infarcted myocardial scar"
    assert (reference == 2221).any() and np.array_equal(written == 1, reference == 2221)
    assert np.array_equal(written == 2, reference == 500)


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("task", ["la", "myops"])
def test_oracle_real_sample_cases_exact(in_run_folder, monkeypatch, sample_data, task):
    # the scanner's own geometry: oblique MyoPS stacks (qform only, LSP and PSR), LA at 0.625 mm
    from tests.conftest import REPO

    monkeypatch.setenv("CARE_SAMPLE_DATA", str(sample_data))
    # post-processing off: real references are not always one region (Case3029's myocardium has
    # a 6-voxel island, which keeping the largest component rightly removes)
    no_post_processing = ["--model.postprocessing.largest_component", "[]", "--model.postprocessing.contained_in", "{}"]
    with oracle_volumes(monkeypatch):
        main(["test", "--config", str(REPO / "experiments" / "real_samples.yaml"), *CSV_ONLY, *ORACLE, *NOT_RESAMPLED,
              *no_post_processing, "--data.tasks", f"[{task}]", "--data.cache_dir", str(in_run_folder / "cache")])
    rows = scored_rows(in_run_folder)
    assert rows.uid.nunique() == {"la": 4, "myops": 10}[task]
    assert_exact(rows)
