import nibabel as nib
import numpy as np
import pytest

import vocabulary
from datamodules.case import DataSource
from datamodules.manifest import Manifest
from datamodules.readers import read_source
from tests.conftest import phantom_sources


def test_phantom_sources_read_into_a_valid_manifest_with_roles(phantom_root):
    manifest = Manifest.from_sources(phantom_sources(phantom_root))
    frame = manifest.to_frame()
    assert set(frame.task) == {"la", "whs", "myops"}
    roles = frame.groupby("center").role.first().to_dict()
    assert roles["la_yale"] == "OOD" and roles["whs_ct_b"] == "OOD" and roles["myops_c3"] == "OOD"
    assert roles["la_utah"] == "ID" and roles["whs_mr_a"] == "ID" and roles["myops_c2"] == "ID"
    assert frame.uid.is_unique


@pytest.mark.real_data
def test_real_myops_cases_pair_each_sequence_with_its_label(sample_data):
    lge = read_source(DataSource("myops", str(sample_data / "myops_real"), "myops", "real", "LGE", "train"))
    c0 = read_source(DataSource("myops", str(sample_data / "myops_real"), "myops", "real", "C0", "test"))
    assert len(lge) == len(c0) == 30
    for case in lge:
        assert case.image.endswith(f"{case.case_id}_LGE.nii.gz")
        assert case.label.endswith(f"{case.case_id}_gd.nii.gz")
    assert {c.case_id for c in lge} == {c.case_id for c in c0}


@pytest.mark.real_data
def test_real_la_cases_read_with_label_codes(sample_data):
    cases = read_source(DataSource("lascarqs", str(sample_data / "la_real"), "la", "real", "LGE", "train"))
    assert len(cases) == 24
    label = nib.load(cases[0].label)
    assert set(np.unique(np.asanyarray(label.dataobj)).tolist()) == {0, 255}


def test_missing_root_and_empty_root_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="nowhere.*is not a folder"):
        read_source(DataSource("mmwhs", str(tmp_path / "nowhere"), "whs", "c", "CT", "train"))
    with pytest.raises(ValueError, match=f"{tmp_path}.*holds no"):
        read_source(DataSource("myops", str(tmp_path), "myops", "c", "LGE", "train"))


def _write(path, array, dtype=np.int16):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=dtype), np.eye(4)), path)


def test_manifest_lists_every_problem_naming_files(tmp_path):
    _write(tmp_path / "a/c1_image.nii.gz", np.zeros((4, 4, 4)))  # no label
    _write(tmp_path / "b/c2_image.nii.gz", np.zeros((4, 4, 4)))
    _write(tmp_path / "b/c2_label.nii.gz", np.zeros((4, 4, 4)))
    sources = [DataSource("mmwhs", str(tmp_path / "a"), "whs", "x", "CT", "train"),
               DataSource("mmwhs", str(tmp_path / "b"), "whs", "y", "CT", "train"),
               DataSource("mmwhs", str(tmp_path / "b"), "whs", "z", "CT", "test")]
    with pytest.raises(ValueError) as error:
        Manifest.from_sources(sources)
    message = str(error.value)
    assert "c1_image.nii.gz" in message and "no label file" in message
    assert "c2_image.nii.gz is used in several splits" in message


def test_unknown_layout_is_reported_with_its_root(tmp_path):
    with pytest.raises(ValueError, match="unknown layout 'acdc_v2'"):
        Manifest.from_sources([DataSource("acdc_v2", str(tmp_path), "whs", "x", "CT", "train")])


def _acdc_release(root, info: bool):
    """Two patients in the ACDC release layout: release frame numbers, a 4D cine beside them."""
    for patient, frames in (("patient001", (1, 12)), ("patient002", (1, 9))):
        for frame in frames:
            _write(root / patient / f"{patient}_frame{frame:02d}.nii.gz", np.zeros((4, 4, 2)), np.float32)
            _write(root / patient / f"{patient}_frame{frame:02d}_gt.nii.gz", np.full((4, 4, 2), 3), np.uint8)
        _write(root / patient / f"{patient}_4d.nii.gz", np.zeros((4, 4, 2, 3)), np.float32)
        if info:  # ED and ES written against number order, so the file must win
            (root / patient / "Info.cfg").write_text(f"ED: {frames[1]}\nES: {frames[0]}\nGroup: NOR\n")


@pytest.mark.parametrize("info", [True, False])
def test_acdc_release_frames_pair_with_their_labels_and_phases(tmp_path, info):
    _acdc_release(tmp_path, info)
    cases = read_source(DataSource("acdc", str(tmp_path), "acdc", "dijon", "bSSFP", "test", cases=["patient001"]))
    assert [c.case_id for c in cases] == ["patient001_frame01", "patient001_frame12"]  # both frames of the patient
    assert all(c.subject == "patient001" and c.label.endswith(f"{c.case_id}_gt.nii.gz") for c in cases)
    assert [c.phase for c in cases] == (["ES", "ED"] if info else ["ED", "ES"])
    every = read_source(DataSource("acdc", str(tmp_path), "acdc", "dijon", "bSSFP", "test"))
    assert len(every) == 4 and not any("_4d" in c.image for c in every)


def test_one_subject_in_two_splits_is_refused(tmp_path):
    _acdc_release(tmp_path, info=False)
    frames = read_source(DataSource("acdc", str(tmp_path), "acdc", "dijon", "bSSFP", "train", cases=["patient001"]))
    from dataclasses import replace
    with pytest.raises(ValueError, match="subject 'patient001' of center 'dijon' is in several splits"):
        Manifest([frames[0], replace(frames[1], split="test")])


@pytest.mark.real_data
def test_real_acdc_cases_read_with_release_codes(sample_data):
    cases = read_source(DataSource("acdc", str(sample_data / "acdc_real"), "acdc", "dijon", "bSSFP", "test"))
    assert len(cases) == 30 and len({c.subject for c in cases}) == 15
    assert {c.phase for c in cases} == {"ED", "ES"}
    label = nib.load(cases[0].label)
    assert set(np.unique(np.asanyarray(label.dataobj)).tolist()) == {0, 1, 2, 3}
    masks = vocabulary.binary_masks(np.asanyarray(label.dataobj), "acdc", ["lv", "rv", "myo"])
    assert masks.any(axis=(1, 2, 3)).all() and not (masks[0] & masks[2]).any()
