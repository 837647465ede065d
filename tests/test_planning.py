"""The data fingerprint and nnU-Net-style plan that ``care-cardiac check`` prints."""

from datamodules.case import Case
from datamodules.checks import CaseReport
from datamodules.planning import fingerprint, plan
from datamodules.preprocessing import Preprocessing


def report(task, spacing, shape, split="train", modality="LGE", layout="myops"):
    case = Case(case_id=f"{task}{shape}", task=task, center="c", modality=modality, layout=layout,
                image="i.nii.gz", label="l.nii.gz", split=split)
    return CaseReport(case=case, spacing=spacing, shape=shape)


def test_fingerprint_takes_medians_of_training_cases_with_the_thick_axis_wherever_it_lies():
    reports = [report("myops", (0.75, 12.0, 0.75), (400, 5, 320)),  # thick axis in the middle (LSP -> RAS)
               report("myops", (0.75, 0.75, 10.0), (400, 320, 3)),
               report("myops", (0.7, 0.7, 20.0), (400, 320, 4)),
               report("myops", (2.0, 2.0, 2.0), (10, 10, 10), split="val")]  # not a training case
    row = fingerprint(reports).iloc[0]
    assert row.cases == 3 and row.in_plane_mm == 0.75 and row.through_plane_mm == 12.0 and row.slices == 4
    assert row.fov_mm_long == 300.0 and row.fov_mm_short == 240.0


def test_plan_gives_the_whole_field_of_view_patch_and_the_share_the_configured_patch_covers():
    reports = [report("myops", (0.75, 0.75, 12.0), (400, 320, 5)),
               report("la", (0.625, 0.625, 0.625), (192, 144, 88), layout="lascarqs")]
    table = plan(reports, Preprocessing(target_spacing={"myops": 1.25, "la": 1.25}), [96, 96]).set_index("task")
    assert table.loc["myops", "fov_voxels"] == "240 x 192"
    assert table.loc["myops", "whole_fov_patch_2d"] == "256 x 192"  # rounded up to multiples of 32
    assert table.loc["myops", "fov_covered"] == round(96 / 240 * 96 / 192, 2)
    assert table.loc["la", "fov_voxels"] == "96 x 72" and table.loc["la", "fov_covered"] == 1.0
    assert table.loc["la", "nnunet_spacing_mm"] == 0.62 and table.loc["la", "normalisation"] == "mri"


def test_the_ct_window_is_planned_from_ct_training_foreground_only():
    def with_intensity(modality, split, low, high):
        entry = report("whs", (1.0, 1.0, 1.0), (100, 100, 100), split=split, modality=modality, layout="mmwhs")
        entry.foreground_intensity = (low, high, (low + high) / 2, 100.0)
        return entry

    reports = [with_intensity("CT", "train", -100, 600), with_intensity("CT", "train", -60, 700),
               with_intensity("CT", "train", -80, 900), with_intensity("CT", "val", -1000, 3000),
               with_intensity("MRI", "train", 0, 2000)]
    table = plan(reports, Preprocessing(target_spacing={"whs": 1.5}), [96, 96]).set_index("task")
    assert table.loc["whs", "nnunet_ct_window"] == "-80 .. 700"  # medians of the CT training cases
    assert table.loc["whs", "ct_window"] == "-250 .. 750"  # the experiment's own, for comparison
    assert "nnunet_ct_window" not in plan(reports[-1:], Preprocessing(target_spacing={"whs": 1.5}), [96, 96])


def test_the_data_check_measures_foreground_intensity(tmp_path):
    import nibabel as nib
    import numpy as np

    from datamodules.checks import check_case

    image = np.full((20, 20, 10), -500.0, dtype=np.float32)
    label = np.zeros((20, 20, 10), dtype=np.int16)
    label[5:15, 5:15, 2:8] = 500  # MM-WHS LV code
    image[label > 0] = np.linspace(0, 400, int((label > 0).sum()))
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "ct_image.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / "ct_label.nii.gz")
    case = Case(case_id="ct", task="whs", center="c", modality="CT", layout="mmwhs",
                image=str(tmp_path / "ct_image.nii.gz"), label=str(tmp_path / "ct_label.nii.gz"), split="train")
    low, high, mean, std = check_case(case).foreground_intensity
    assert 0 <= low < 5 and 395 < high <= 400 and abs(mean - 200) < 1 and std > 100  # background -500 left out
