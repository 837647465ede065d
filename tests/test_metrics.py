import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from lightning_modules.evaluation import aggregate
from lightning_modules.evaluation.metrics import score_case, score_structure


def _surface(mask):
    return mask & ~ndimage.binary_erosion(mask)


def _directed(a, b, spacing):
    """Distances from a's boundary voxels to b's boundary, by SciPy's exact EDT."""
    distance = ndimage.distance_transform_edt(~_surface(b), sampling=spacing)
    return distance[_surface(a)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_scipy_computation(seed):
    rng = np.random.default_rng(seed)
    spacing = (0.7, 1.1, 5.0)
    pred = ndimage.binary_dilation(rng.random((24, 20, 8)) > 0.97, iterations=2)
    ref = ndimage.binary_dilation(rng.random((24, 20, 8)) > 0.97, iterations=2)
    scores = score_structure(pred, ref, spacing)
    d_ab, d_ba = _directed(pred, ref, spacing), _directed(ref, pred, spacing)
    assert scores["dice"] == pytest.approx(2 * (pred & ref).sum() / (pred.sum() + ref.sum()), abs=1e-6)
    assert scores["hd"] == pytest.approx(max(d_ab.max(), d_ba.max()), abs=1e-4)
    assert scores["hd95"] == pytest.approx(max(np.quantile(d_ab, 0.95), np.quantile(d_ba, 0.95)), abs=1e-4)
    assert scores["ref_ml"] == pytest.approx(ref.sum() * np.prod(spacing) / 1000)


def _world_boundary(mask, affine):
    """World coordinates (mm) of a mask's boundary voxels: the mask minus its 6-connected
    erosion, with outside the image counting as background (so border voxels are boundary)."""
    padded = np.pad(mask, 1)
    boundary = (padded & ~ndimage.binary_erosion(padded))[1:-1, 1:-1, 1:-1]
    index = np.argwhere(boundary)
    return index @ affine[:3, :3].T + affine[:3, 3]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_nearest_neighbours_in_world_coordinates_on_an_oblique_grid(seed):
    """Independent of MONAI and of distance transforms: boundary voxels are placed in the world
    through an oblique, anisotropic affine and matched with a k-d tree."""
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    from datamodules.geometry import spacing_of

    rng = np.random.default_rng(seed)
    spacing = rng.uniform(0.6, 1.2, 3) * np.array([1.0, 1.0, rng.uniform(5, 15)])  # a thick-slice stack
    affine = np.eye(4)
    affine[:3, :3] = Rotation.random(random_state=seed).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = rng.normal(0, 50, 3)
    shape = (30, 26, 7)
    pred = ndimage.binary_dilation(rng.random(shape) > 0.985, iterations=2)
    ref = ndimage.binary_dilation(rng.random(shape) > 0.985, iterations=2)
    pred[0, :4, :2] = True  # touches the image border: still boundary there
    scores = score_structure(pred, ref, spacing_of(affine))
    a, b = _world_boundary(pred, affine), _world_boundary(ref, affine)
    d_ab, d_ba = cKDTree(b).query(a)[0], cKDTree(a).query(b)[0]
    assert scores["hd"] == pytest.approx(max(d_ab.max(), d_ba.max()), abs=1e-4)
    assert scores["hd95"] == pytest.approx(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), abs=1e-4)
    assert scores["dice"] == pytest.approx(2 * (pred & ref).sum() / (pred.sum() + ref.sum()), abs=1e-6)
    assert scores["pred_ml"] == pytest.approx(pred.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000)


def test_empty_mask_rules():
    empty, full = np.zeros((4, 5, 6), bool), np.zeros((4, 5, 6), bool)
    full[1:3, 1:3, 1:3] = True
    both = score_structure(empty, empty, (1, 2, 3))
    assert (both["dice"], both["hd"], both["hd95"]) == (1.0, 0.0, 0.0)
    one = score_structure(empty, full, (1, 2, 3))
    diagonal = np.linalg.norm([4 * 1, 5 * 2, 6 * 3])
    assert one["dice"] == 0.0 and one["hd"] == pytest.approx(diagonal) and one["hd95"] == pytest.approx(diagonal)


def test_only_annotated_structures_are_scored():
    # a false positive in a structure the case does not annotate counts for nothing (no row at all)
    reference = np.zeros((2, 4, 4, 2), bool)
    reference[0, :2] = True
    predicted = reference.copy()
    predicted[1, 0, 0] = True
    rows = score_case(predicted, reference, ["lv", "rv"], [True, False], (1, 1, 1), {"uid": "c"})
    assert [(row["structure"], row["dice"]) for row in rows] == [("lv", 1.0)]


def test_leaderboard_is_mean_over_cases_of_structure_means():
    rows = []
    for case, role, dices in (("a", "ID", (1.0, 0.5)), ("b", "ID", (0.0, 0.5)), ("c", "OOD", (0.2, 0.4))):
        for structure, dice in zip(("lv", "myo"), dices):
            rows.append({"uid": case, "case_id": case, "task": "myops", "center": role, "modality": "LGE", "role": role,
                         "structure": structure, "dice": dice, "hd": 1.0, "hd95": 1.0})
    frame = aggregate.rows_frame(rows + rows[:2])  # duplicated rows (DDP padding) count once
    board = aggregate.leaderboard(frame).set_index("split")
    assert board.loc["ID", "dice"] == pytest.approx(0.5)
    assert board.loc["OOD", "dice"] == pytest.approx(0.3)
    assert board.loc["ID", "cases"] == 2
    assert isinstance(aggregate.center_table(frame), pd.DataFrame)


def test_center_with_two_modalities_is_named_per_modality():
    rows = [{"uid": f"myops/c/{m}/{i}", "case_id": str(i), "task": "myops", "center": "c", "modality": m,
             "role": "ID" if m == "LGE" else "OOD", "structure": "lv", "dice": d, "hd": 1.0, "hd95": 1.0}
            for i, (m, d) in enumerate([("LGE", 0.9), ("C0", 0.5)])]
    rows.append({**rows[0], "uid": "la/x/LGE/0", "task": "la", "center": "x", "structure": "la"})
    table = aggregate.task_center_means(aggregate.rows_frame(rows)).set_index("name")
    assert table.loc["c/LGE", "dice"] == 0.9 and table.loc["c/C0", "dice"] == 0.5
    assert table.loc["x", "role"] == "ID"


def test_largest_component_post_processing_keeps_one_region_for_listed_structures():
    from lightning_modules.inference.postprocessing import PostProcessing

    maps = torch.zeros(2, 12, 12, 4)
    maps[:, 1:6, 1:6, 1] = 0.9  # big region
    maps[:, 9:11, 9:11, 2] = 0.9  # small stray region
    _, masks = PostProcessing(largest_component=["myo"], contained_in=None)(maps, ["myo", "scar"], task=None)
    assert masks[0].sum() == 25 and masks[1].sum() == 29  # scar keeps both regions
    assert not masks[0][9:11, 9:11].any()
    with pytest.raises(ValueError, match="unknown structures"):
        PostProcessing(largest_component=["heart"])
    # scar cut to the (post-processed) myocardium: its far region goes with the myocardium's
    _, masks = PostProcessing(largest_component=["myo"], contained_in={"scar": "myo"})(maps, ["myo", "scar"], None)
    assert masks[1].sum() == 25 and not masks[1][9:11, 9:11].any()
    with pytest.raises(ValueError, match="unknown structures"):
        PostProcessing(contained_in={"scar": "wall"})
    with pytest.raises(ValueError, match="threshold"):
        PostProcessing(threshold=1.0)
    # free-text prompts name no structure: none is cut to another's mask
    apart = torch.zeros(2, 12, 12, 4)
    apart[0, 1:6, 1:6, 1] = 0.9
    apart[1, 7:11, 7:11, 2] = 0.9
    _, masks = PostProcessing(largest_component=["myo"], contained_in={"scar": "myo"})(apart, [None, None], None)
    assert masks[0].sum() == 25 and masks[1].sum() == 16


def test_mirroring_tta_averages_every_flip_combination_back_in_place():
    from monai.inferers import SimpleInferer

    from lightning_modules.inference.postprocessing import PostProcessing
    from lightning_modules.inference.predictor import WholeVolumePredictor
    from lightning_modules.training.module import CardiacSegmentationModule

    calls = []

    class Probe(WholeVolumePredictor):
        def logits(self, image, slice_axis, prompt_sets):
            calls.append(image.clone())
            return image[:, :1] * 10  # a position-dependent "model": un-flipped correctly, every pass agrees

    def probe(tta_axes, inferer=SimpleInferer()):
        return Probe(torch.nn.Identity(), inferer, tta_axes, PostProcessing()).predict(batch)[0].probabilities

    image = torch.randn(1, 1, 5, 4, 3)
    batch = {"image": image, "prompts": [["x"]], "structures": [None], "modality": "CT", "task": None,
             "slice_axis": 2, "affine": np.eye(4), "original_shape": (5, 4, 3), "original_affine": np.eye(4)}
    plain = probe([])
    calls.clear()
    mirrored = probe([0, 2])
    assert len(calls) == 4
    assert {tuple(c.flatten()[:3].tolist()) for c in calls} == {tuple(image.flip(d).flatten()[:3].tolist())
                                                               for d in ([], [2], [4], [2, 4])}
    torch.testing.assert_close(mirrored, plain)
    calls.clear()  # a 2D model (SliceInferer) is not mirrored across the case's slice axis
    from monai.inferers import SliceInferer
    probe([0, 2], SliceInferer(roi_size=[4, 4], spatial_dim=2))
    assert {tuple(c.flatten()[:3].tolist()) for c in calls} == {tuple(image.flip(d).flatten()[:3].tolist())
                                                               for d in ([], [2])}
    with pytest.raises(ValueError, match="tta_axes"):
        CardiacSegmentationModule(torch.nn.Identity(), tta_axes=[3], deep_supervision=False)


def test_cavity_filling_gives_the_lv_what_its_wall_encloses_on_the_listed_sequences_only():
    from lightning_modules.inference.postprocessing import PostProcessing

    y, x = np.mgrid[:32, :32]
    radius = np.hypot(y - 16, x - 16)
    lv = radius < 8
    myo = (radius >= 8) & (radius < 12)
    muscle = (radius < 8) & (radius >= 5) & (x > 20) & (abs(y - 16) < 2)  # a papillary muscle jutting in
    lv, myo = lv & ~muscle, myo | muscle
    maps = torch.zeros(2, 32, 32, 3)
    maps[0, ..., 1] = torch.from_numpy(lv.astype(np.float32))
    maps[1, ..., 1] = torch.from_numpy(myo.astype(np.float32))
    maps[1, ..., 2] = torch.from_numpy(myo.astype(np.float32))  # a slice with wall and no cavity
    post = PostProcessing(largest_component=None, contained_in=None, cavities={"lv": "myo"},
                          cavity_modalities=["C0", "bSSFP"])
    _, cine = post(maps, ["lv", "myo"], None, slice_axis=2, modality="bSSFP")
    assert cine[0][..., 1][muscle].all() and not cine[1][..., 1][muscle].any()  # the muscle is blood pool now
    assert not cine[0][..., 1][radius >= 9].any()  # the hull stays at the endocardium (a pixel of digitisation)
    assert not (cine[0][..., 1] & cine[1][..., 1]).any()  # the wall lost what the cavity gained ...
    assert ((cine[0][..., 1] | cine[1][..., 1]) == (lv | myo)).all()  # ... and nothing else moved
    assert (cine[1][..., 2] == myo).all()  # a slice without cavity keeps its wall
    _, lge = post(maps, ["lv", "myo"], None, slice_axis=2, modality="LGE")
    assert (lge[0] == maps[0].numpy().astype(bool)).all() and (lge[1] == maps[1].numpy().astype(bool)).all()
    with pytest.raises(ValueError, match="cavities names unknown"):
        PostProcessing(cavities={"lv": "wall"})
    with pytest.raises(ValueError):
        PostProcessing(cavities={"lv": "myo"}, cavity_modalities=["cine"])
