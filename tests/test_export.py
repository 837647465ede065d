"""Label maps in the tasks' codes, NIfTI files that keep the input's geometry, and the identity
round trip on the real sample cases."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import vocabulary
from lightning_modules.inference.label_maps import compose_label_map, compose_prompt_map
from lightning_modules.inference.nifti_export import write_like
from lightning_modules.inference.prediction_writer import LabelMapWriter


def test_overlaps_go_to_the_most_probable_structure_and_scar_is_written_over_myocardium():
    masks = np.zeros((4, 6, 1, 1), bool)
    probabilities = np.zeros((4, 6, 1, 1))
    structures = ["lv", "myo", "scar", "edema"]
    masks[0, :3] = masks[1, 1:5] = True  # LV and myocardium overlap on voxels 1-2
    probabilities[0, :3, 0, 0] = [0.9, 0.9, 0.55]
    probabilities[1, 1:5] = 0.7
    masks[2, 4] = masks[3, 3:5] = True  # scar and edema both claim voxel 4
    label = compose_label_map(masks, structures, "myops", probabilities)
    assert label[:, 0, 0].tolist() == [500, 500, 200, 1220, 2221, 0]
    assert label.dtype == np.int16
    # without probabilities the structure listed first wins
    assert compose_label_map(masks, structures, "myops")[:, 0, 0].tolist() == [500, 500, 500, 1220, 2221, 0]
    la = compose_label_map(np.ones((1, 2, 2, 2), bool), ["la"], "lascarqs")
    assert la.dtype == np.uint8 and (la == 255).all()
    assert compose_prompt_map(masks[:2], probabilities[:2])[:, 0, 0].tolist() == [1, 1, 2, 2, 2, 0]
    with pytest.raises(ValueError, match="no code for"):
        compose_label_map(masks[:1], ["aorta"], "myops")


def _oblique_image(path: Path, shape=(7, 6, 5)) -> Path:
    """A qform-only (sform code 0), oblique, anisotropic float image with intensity scaling."""
    rotation = np.array([[0.0, -1.0, 0.0], [0.6, 0.0, -0.8], [0.8, 0.0, 0.6]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.73, 0.73, 12.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    image = nib.Nifti1Image(np.random.default_rng(0).normal(size=shape).astype(np.float32), None)
    image.set_qform(affine, code=1)
    image.set_sform(np.eye(4), code=0)
    image.header.set_slope_inter(2.0, 5.0)
    nib.save(image, path)
    return path


def test_written_file_keeps_the_input_geometry_and_refuses_to_overwrite(tmp_path):
    source = _oblique_image(tmp_path / "image.nii.gz")
    label = np.zeros((7, 6, 5), np.int16)
    label[2:4, 1:3, 1:4] = 2221
    out = write_like(label, source, tmp_path / "out" / "case_gd.nii.gz")
    written, original = nib.load(out), nib.load(source)
    assert written.shape == original.shape
    assert np.array_equal(written.affine, original.affine)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 0)
    assert np.array_equal(written.header.get_qform(), original.header.get_qform())
    assert np.array_equal(np.asanyarray(written.dataobj), label)  # no intensity scaling applied to codes
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind
    with pytest.raises(FileExistsError, match="case_gd.nii.gz exists"):
        write_like(label, source, out)
    with pytest.raises(ValueError, match="does not fit"):
        write_like(label[:3], source, tmp_path / "other.nii.gz")



def _identity_round_trip(image: Path, reference: Path, task: str, structures: list[str], out: Path):
    from lightning_modules.inference.postprocessing import PostProcessing
    from lightning_modules.inference.predictor import WholeVolumePredictor
    from lightning_modules.training.module import CardiacSegmentationModule

    codes = np.asanyarray(nib.load(reference).dataobj)
    layout = vocabulary.TASKS[task].layout
    maps = torch.from_numpy(vocabulary.binary_masks(codes, layout, structures).astype(np.float32))

    class IdentityPredictor(WholeVolumePredictor):
        def _probabilities(self, batch, prompt_sets):
            return maps  # the reference itself, as probabilities on the file's grid

    class IdentityModule(CardiacSegmentationModule):
        @property
        def predictor(self):
            return IdentityPredictor(self.net, None, [], self.postprocessing)

    # no clean-up: the export alone must give the reference back
    module = IdentityModule(net=torch.nn.Identity(), deep_supervision=False,
                            postprocessing=PostProcessing(largest_component=None, contained_in=None))
    batch = {"uid": str(image), "case_id": image.name, "task": task, "structures": structures, "modality": "LGE",
             "prompts": [[vocabulary.prompt(s, "LGE") for s in structures]], "image_path": str(image),
             "original_affine": nib.load(image).affine}
    prediction = module.predict_step(batch, 0)
    writer = LabelMapWriter({str(image): out})
    writer.write_on_batch_end(None, module, prediction, None, batch, 0)
    return codes


def test_identity_export_reproduces_every_real_myops_reference(sample_data, tmp_path):
    """All five MyoPS structures (RV and edema too) go out through predict_step and the writer,
    and come back as the reference file's codes, voxel for voxel, on the LGE image's grid."""
    images = sorted((sample_data / "myops_real").glob("*/*_LGE.nii.gz"))
    assert len(images) == 30
    for image in images:
        reference = image.with_name(image.name.replace("_LGE", "_gd"))
        out = tmp_path / reference.name
        codes = _identity_round_trip(image, reference, "myops", ["lv", "rv", "myo", "scar", "edema"], out)
        written, source = nib.load(out), nib.load(image)
        assert np.array_equal(np.asanyarray(written.dataobj), codes), image
        assert written.shape == source.shape and np.array_equal(written.affine, source.affine)
        assert int(written.header["sform_code"]) == int(source.header["sform_code"])


def test_identity_export_reproduces_real_la_references(sample_data, tmp_path):
    cases = sorted(p for p in (sample_data / "la_real").iterdir() if p.is_dir())
    assert len(cases) == 24
    for case in cases:
        out = tmp_path / case.name / "atriumSegImgMO.nii.gz"
        codes = _identity_round_trip(case / "enhanced.nii.gz", case / "atriumSegImgMO.nii.gz", "la", ["la"], out)
        written = nib.load(out)
        assert np.array_equal(np.asanyarray(written.dataobj), codes)
        assert np.array_equal(written.affine, nib.load(case / "enhanced.nii.gz").affine)
