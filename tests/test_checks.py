"""Every bad input named by the data check: the message names the file and the problem."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from datamodules.case import Case
from datamodules.checks import check_case, check_cases, problems_of, summary_table

AFFINE = np.diag([1.5, 1.5, 10.0, 1.0])


def write(path, data, affine=AFFINE, dtype=None):
    image = nib.Nifti1Image(np.asarray(data), affine)
    if dtype is not None:
        image.set_data_dtype(dtype)
    nib.save(image, str(path))
    return str(path)


def myops_case(tmp_path, name="c1", image=None, label=None, label_dtype=np.int16, label_affine=AFFINE):
    image = np.random.default_rng(0).normal(size=(8, 8, 3)).astype(np.float32) if image is None else image
    if label is None:
        label = np.zeros((8, 8, 3), dtype=np.int16)
        label[2:6, 2:6, 1] = 200
        label[3:5, 3:5, 1] = 500
        label[2, 2, 1] = 2221
    image_path = write(tmp_path / f"{name}_LGE.nii.gz", image)
    label_path = write(tmp_path / f"{name}_gd.nii.gz", label.astype(label_dtype), label_affine)
    return Case(name, "myops", "c", "LGE", "myops", image_path, label_path, "train")


def test_clean_case_has_no_problems_and_reports_codes_and_volumes(tmp_path):
    report = check_case(myops_case(tmp_path))
    assert report.problems == []
    assert report.codes == (0, 200, 500, 2221)
    assert report.spacing == (1.5, 1.5, 10.0) and report.shape == (8, 8, 3)
    assert report.volumes_ml["lv"] == pytest.approx(4 * 1.5 * 1.5 * 10 / 1000)
    assert report.volumes_ml["myo"] == pytest.approx(12 * 1.5 * 1.5 * 10 / 1000)  # 200 ring + 2221 inside it


def only_problem(case):
    problems = check_case(case).problems
    assert len(problems) == 1, problems
    return problems[0]


def test_missing_label_file_is_named(tmp_path):
    case = myops_case(tmp_path)
    (tmp_path / "c1_gd.nii.gz").unlink()
    assert only_problem(case) == f"{case.label}: label file is missing"


def test_corrupt_image_is_named(tmp_path):
    case = myops_case(tmp_path)
    (tmp_path / "c1_LGE.nii.gz").write_bytes(b"not a nifti at all")
    problem = only_problem(case)
    assert problem.startswith(case.image) and "unreadable" in problem


def test_truncated_image_data_is_named(tmp_path):
    case = myops_case(tmp_path, image=np.zeros((64, 64, 3), np.float32), label=np.pad(
        np.full((8, 8, 3), 500, np.int16), ((28, 28), (28, 28), (0, 0))))
    raw = gzip.decompress((tmp_path / "c1_LGE.nii.gz").read_bytes())
    (tmp_path / "c1_LGE.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    problem = only_problem(case)
    assert problem.startswith(case.image) and "corrupt" in problem


def test_label_grid_of_other_shape_is_named(tmp_path):
    case = myops_case(tmp_path, label=np.full((8, 8, 4), 500, np.int16))
    problem = only_problem(case)
    assert problem.startswith(case.label) and "differs from image grid" in problem


def test_label_affine_beyond_tolerance_is_named(tmp_path):
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.5
    problem = only_problem(myops_case(tmp_path, label_affine=shifted))
    assert "label affine differs" in problem and "0.5 mm" in problem


def test_unknown_label_codes_are_named(tmp_path):
    label = np.zeros((8, 8, 3), np.int16)
    label[1:4, 1:4, 1] = 500
    label[0, 0, 0] = 7
    problem = only_problem(myops_case(tmp_path, label=label))
    assert "label codes [7] are not in the myops layout" in problem


def test_nan_intensities_are_named(tmp_path):
    image = np.zeros((8, 8, 3), np.float32)
    image[0, 0, 0] = np.nan
    image[1, 0, 0] = np.inf
    case = myops_case(tmp_path, image=image)
    assert only_problem(case) == f"{case.image}: image has 2 NaN/Inf voxels"


def test_label_without_task_structures_is_named(tmp_path):
    label = np.zeros((8, 8, 3), np.int16)
    label[1:4, 1:4, 1] = 600  # RV only: not a MyoPS target
    problem = only_problem(myops_case(tmp_path, label=label))
    assert "contains none of task 'myops'" in problem and "600" in problem


def test_label_dtype_too_small_for_the_codes_is_named(tmp_path):
    label = np.zeros((8, 8, 3), np.int16)
    label[1:4, 1:4, 1] = 200
    problems = check_case(myops_case(tmp_path, label=label, label_dtype=np.uint8)).problems
    assert any("stored as uint8, which cannot hold code 2221" in p for p in problems)


def test_all_problems_of_all_cases_are_listed_together(tmp_path):
    nan = np.full((8, 8, 3), np.nan, np.float32)
    cases = [myops_case(tmp_path, "a", image=nan), myops_case(tmp_path, "b", label=np.full((8, 8, 4), 500, np.int16)),
             myops_case(tmp_path, "ok")]
    reports = check_cases(cases)
    problems = problems_of(reports)
    assert len(problems) == 2 and "a_LGE" in problems[0] and "b_gd" in problems[1]
    table = summary_table(reports)
    assert table.loc[0, "cases"] == 3 and table.loc[0, "problems"] == 2


def test_files_broken_on_disk_are_each_named_in_one_run(tmp_path):
    # as files really break: a download cut short, flipped bits, an empty annotation, a lost file
    big = np.random.default_rng(1).normal(size=(64, 64, 3)).astype(np.float32)
    label = np.pad(np.full((8, 8, 3), 500, np.int16), ((28, 28), (28, 28), (0, 0)))
    cut, crc, empty, lost = (myops_case(tmp_path, name, image=big, label=label) for name in ("cut", "crc", "empty", "lost"))
    data = (tmp_path / "cut_LGE.nii.gz").read_bytes()
    (tmp_path / "cut_LGE.nii.gz").write_bytes(data[: len(data) * 2 // 3])  # compressed bytes dropped
    data = bytearray((tmp_path / "crc_LGE.nii.gz").read_bytes())
    data[-8] ^= 0xFF  # gzip trailer: CRC-32 of the data, then its length
    (tmp_path / "crc_LGE.nii.gz").write_bytes(bytes(data))
    write(tmp_path / "empty_gd.nii.gz", np.zeros((64, 64, 3), np.int16))
    (tmp_path / "lost_LGE.nii.gz").unlink()
    problems = problems_of(check_cases([cut, crc, empty, lost, myops_case(tmp_path, "ok")]))
    assert len(problems) == 4, problems
    by_file = {problem.split(": ")[0]: problem for problem in problems}
    assert set(by_file) == {cut.image, crc.image, empty.label, lost.image}
    assert "corrupt" in by_file[cut.image] or "unreadable" in by_file[cut.image]
    assert "corrupt" in by_file[crc.image] or "unreadable" in by_file[crc.image]
    assert "contains none of task 'myops'" in by_file[empty.label]
    assert by_file[lost.image] == f"{lost.image}: image file is missing"
