"""The real sample cases (``CARE_SAMPLE_DATA``, else ``../shared/data``): geometry-true preprocessing and a clean data check."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules.case import DataSource
from datamodules.checks import check_cases, problems_of
from datamodules.preprocessing import Preprocessing, to_original_grid
from datamodules.readers import read_source
from tests.conftest import DEFAULT_SAMPLE_DATA, REPO, sample_data_root

pytestmark = pytest.mark.real_data


def test_sample_cases_default_to_the_folder_the_experiments_name(monkeypatch):
    # unset, the tests look where real_samples.yaml's sources look from the repository root
    monkeypatch.delenv("CARE_SAMPLE_DATA", raising=False)
    assert sample_data_root() == (DEFAULT_SAMPLE_DATA, False)
    experiment = OmegaConf.load(REPO / "experiments" / "real_samples.yaml")
    roots = {Path(source["root"]).parent for source in OmegaConf.to_container(experiment.data.sources, resolve=True)}
    assert {(REPO / root).resolve() for root in roots} == {DEFAULT_SAMPLE_DATA.resolve()}
    monkeypatch.setenv("CARE_SAMPLE_DATA", "/elsewhere")
    assert sample_data_root() == (Path("/elsewhere"), True)


def myops_cases(sample_data, sequence="LGE"):
    return read_source(DataSource("myops", str(sample_data / "myops_real"), "myops", "real", sequence, "train"))


def round_trip_agreement(prepared) -> float:
    """Share of labelled voxels of the file whose code survives preprocessing and the way back."""
    codes = np.unique(prepared.label.numpy())
    one_hot = torch.stack([(prepared.label == code).float() for code in codes])
    back = to_original_grid(one_hot, prepared.affine, prepared.original_shape, prepared.original_affine)
    restored = codes[back.argmax(0).numpy()]
    original = np.asanyarray(nib.load(prepared.case.label).dataobj)
    labelled = original != 0
    return float((restored[labelled] == original[labelled]).mean())


def test_every_myops_target_aligns_and_returns_to_its_codes(sample_data):
    # 0.75 mm in-plane: the stacks' own resolution (0.73-0.76 mm), so any loss here is geometry, not
    # resolution; every stack, LSP and PSR alike, must end RAS with its 12-23 mm axis kept
    prep = Preprocessing(target_spacing={"myops": 0.75})
    cases = myops_cases(sample_data)
    assert len(cases) == 30
    orientations = set()
    for case in cases:
        orientations.add(nib.aff2axcodes(nib.load(case.image).affine))
        prepared = prep(case, "ID")
        assert nib.aff2axcodes(prepared.affine) == ("R", "A", "S"), case.case_id
        assert prepared.spacing[prepared.slice_axis] > 11.9
        assert prepared.image.shape[1:] == prepared.label.shape
        assert round_trip_agreement(prepared) >= 0.99, case.case_id
    assert {("L", "S", "P"), ("P", "S", "R")} <= orientations  # both axis codes were exercised


def test_coarser_training_grid_still_keeps_the_labels_in_place(sample_data):
    # at 1.5 mm boundary voxels are lost to resolution, but a misregistered grid would lose far more
    prep = Preprocessing(target_spacing={"myops": 1.5})
    for case in myops_cases(sample_data)[::6]:
        assert round_trip_agreement(prep(case, "ID")) >= 0.93, case.case_id


def test_la_cases_load_with_0625_mm_spacing(sample_data):
    cases = read_source(DataSource("lascarqs", str(sample_data / "la_real"), "la", "real", "LGE", "train"))
    assert len(cases) == 24
    reports = check_cases(cases)
    assert problems_of(reports) == []
    for report in reports:
        np.testing.assert_allclose(report.spacing, 0.625, rtol=1e-5)
        assert set(report.codes) == {0, 255}
    prepared = Preprocessing(target_spacing={"la": 0.625})(cases[0], "ID")
    np.testing.assert_allclose(prepared.spacing, 0.625, rtol=1e-5)


def test_data_check_accepts_every_real_myops_sequence(sample_data):
    for sequence in ("LGE", "C0"):
        reports = check_cases(myops_cases(sample_data, sequence))
        assert problems_of(reports) == []
        assert all(set(r.codes) <= {0, 200, 500, 600, 1220, 2221} for r in reports)
        assert all(r.volumes_ml["lv"] > 10 and r.volumes_ml["myo"] > 10 for r in reports)
