import nibabel as nib
import numpy as np
import pytest
import torch

from datamodules.case import DataSource
from datamodules.geometry import resampled_spacing, slice_axis
from datamodules.manifest import Manifest
from datamodules.preprocessing import Preprocessing, to_original_grid
from datamodules.readers import read_source
from tests.conftest import phantom_sources


def test_slice_axis_follows_spacing_not_array_order():
    assert slice_axis([0.73, 12.0, 0.73]) == 1
    assert slice_axis([23.0, 0.74, 0.74]) == 0
    assert slice_axis([1.0, 1.0, 1.1]) == 2  # near isotropic: axial


def test_anisotropic_stacks_keep_their_slice_spacing():
    assert resampled_spacing([0.73, 12.0, 0.73], 1.5, 3.0) == (1.5, 12.0, 1.5)
    assert resampled_spacing([1.0, 1.0, 2.0], 1.5, 3.0) == (1.5, 1.5, 1.5)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="unknown task"):
        Preprocessing(target_spacing={"brain": 1.0})
    with pytest.raises(ValueError, match="ct_window"):
        Preprocessing(ct_window=(100.0, -100.0))


def test_phantom_cases_end_canonical_normalised_and_invertible(phantom_root):
    manifest = Manifest.from_sources(phantom_sources(phantom_root, splits=("val",)))
    prep = Preprocessing(target_spacing={"la": 1.5, "whs": 2.0, "myops": 1.5})
    for case in manifest.cases:
        out = prep(case, manifest.role(case))
        assert nib.aff2axcodes(out.affine) == ("R", "A", "S")
        assert torch.isfinite(out.image).all()
        if case.modality == "CT":
            assert out.image.min() >= -1 and out.image.max() <= 1
        else:
            assert abs(float(out.image.mean())) < 1e-3
        back = to_original_grid(out.label[None].float(), out.affine, out.original_shape, out.original_affine)
        assert tuple(back.shape[1:]) == tuple(out.original_shape)


@pytest.mark.real_data
def test_real_myops_stacks_land_in_one_canonical_frame(sample_data):
    cases = read_source(DataSource("myops", str(sample_data / "myops_real"), "myops", "real", "LGE", "train"))
    prep = Preprocessing(target_spacing={"myops": 1.25})
    axes = {}
    for case in cases[:4]:
        out = prep(case, "ID")
        assert nib.aff2axcodes(out.affine) == ("R", "A", "S")
        axes[case.case_id] = out.slice_axis
        assert out.spacing[out.slice_axis] > 10  # the 12-23 mm slice gap is kept, wherever it landed
    assert axes["Case3001"] == 1 and axes["Case3002"] == 0  # LSP and PSR stacks


@pytest.mark.real_data
def test_real_la_cases_load_at_0625_mm(sample_data):
    case = read_source(DataSource("lascarqs", str(sample_data / "la_real"), "la", "real", "LGE", "train"))[0]
    out = Preprocessing(target_spacing={"la": 0.625})(case, "ID")
    np.testing.assert_allclose(out.spacing, 0.625, rtol=1e-5)
    assert tuple(out.image.shape[1:]) == tuple(out.original_shape)
