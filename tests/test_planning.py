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
