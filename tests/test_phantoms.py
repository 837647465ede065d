import json

import nibabel as nib
import numpy as np
import pytest

import vocabulary
from datamodules.geometry import spacing_of
from datamodules.phantoms import write_phantoms
from datamodules.phantoms.centers import CENTERS
from datamodules.phantoms.render import render_case


def test_layout_file_names_and_splits(phantom_root):
    description = json.loads((phantom_root / "phantoms.json").read_text())
    assert {c["name"] for c in description["centers"]} == {c.name for c in CENTERS}
    assert sorted(p.name for p in (phantom_root / "la/la_utah/train/la_utah_train_000").iterdir()) == [
        "atriumSegImgMO.nii.gz", "enhanced.nii.gz"]
    assert (phantom_root / "whs/whs_ct_a/val/whs_ct_a_val_000_image.nii.gz").is_file()
    assert (phantom_root / "whs/whs_ct_a/val/whs_ct_a_val_000_label.nii.gz").is_file()
    assert (phantom_root / "myops/myops_c1/test/myops_c1_test_000_LGE.nii.gz").is_file()
    assert (phantom_root / "myops/myops_c1/test/myops_c1_test_000_gd.nii.gz").is_file()
    # held-out (OOD) centers have no training split
    for center in CENTERS:
        assert (phantom_root / center.task / center.name / "train").exists() == (not center.held_out)
    assert {c.task for c in CENTERS if c.held_out} == {"la", "whs", "myops"}


@pytest.mark.parametrize("center", CENTERS, ids=lambda c: c.name)
def test_label_codes_dtypes_and_geometry(phantom_root, center):
    folder = phantom_root / center.task / center.name / "val"
    image_path = next(p for p in folder.rglob("*.nii.gz") if "image" in p.name or "LGE" in p.name or "enhanced" in p.name)
    label_path = next(p for p in folder.rglob("*.nii.gz") if p != image_path)
    image, label = nib.load(image_path), nib.load(label_path)
    codes = set(np.unique(np.asanyarray(label.dataobj)).tolist())
    layout = vocabulary.LAYOUTS[center.layout]
    if layout.known_codes is not None:
        assert codes <= layout.known_codes
    expected = {layout.structures[k][0] for k in vocabulary.TASKS[center.task].structures}
    assert expected <= codes, f"every task structure is present in {label_path}"
    if center.layout == "myops":
        assert label.get_data_dtype() == np.int16  # 500/2221 never pass through uint8
        assert {1220, 2221} <= codes
    np.testing.assert_allclose(image.affine, label.affine)
    assert image.shape == label.shape
    np.testing.assert_allclose(spacing_of(image.affine), center.spacing, rtol=1e-4)
    assert "".join(nib.aff2axcodes(image.affine)) == center.axcodes
    if center.short_axis:
        assert int(image.header["sform_code"]) == 0 and int(image.header["qform_code"]) == 1
        assert center.slices[0] <= image.shape[2] <= center.slices[1]


def test_oblique_and_lps_centers_exist():
    oblique = [c for c in CENTERS if c.oblique or c.short_axis]
    assert oblique and any(c.axcodes == "LPS" for c in CENTERS)
    rng = np.random.default_rng(0)
    _, _, affine = render_case(next(c for c in CENTERS if c.short_axis), rng)
    direction = affine[:3, :3] / spacing_of(affine)
    assert np.abs(direction).max(0).min() < 0.99, "short-axis stacks are not axis aligned"


def test_deterministic_for_a_seed_and_different_across_seeds():
    center = CENTERS[0]
    a = render_case(center, np.random.default_rng([1, 2]))
    b = render_case(center, np.random.default_rng([1, 2]))
    c = render_case(center, np.random.default_rng([1, 3]))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_existing_output_is_never_touched(tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        write_phantoms(out)
    assert (out / "keep.txt").read_text() == "mine"


def test_val_cases_count_apart_from_test_cases_and_keep_shared_cases_identical(phantom_root, tmp_path):
    import json

    out = write_phantoms(tmp_path / "p", seed=0, cases_per_center=1, eval_cases=1, val_cases=2)
    splits = {c["name"]: c["splits"] for c in json.loads((out / "phantoms.json").read_text())["centers"]}
    assert splits["myops_c1"] == {"train": 1, "val": 2, "test": 1} and splits["la_yale"] == {"val": 2, "test": 1}
    name = "myops/myops_c1/val/myops_c1_val_000_gd.nii.gz"
    assert len(list((out / "myops" / "myops_c1" / "val").glob("*_gd.nii.gz"))) == 2
    assert np.array_equal(np.asanyarray(nib.load(out / name).dataobj), np.asanyarray(nib.load(phantom_root / name).dataobj))
