"""Augmentations against center shift: ventricle contraction (systole) and random-convolution contrast."""

import pytest
import torch
import torchio as tio

from datamodules.transforms.augmentation import Augmentation
from datamodules.transforms.contraction import RandomVentricleContraction

LV, MYO = 500, 200


def heart(slice_axis: int, size: int = 96) -> tio.Subject:
    """A disk of cavity (radius 20) in a ring of wall (to 28), off-centre, as one slice along
    ``slice_axis``; the image is a function of the label, so a warp of both stays consistent."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    radius = ((rows - 50.0) ** 2 + (cols - 44.0) ** 2).sqrt()
    label = torch.zeros(size, size, dtype=torch.int16)
    label[radius < 28] = MYO
    label[radius < 20] = LV
    image = torch.where(label == LV, 2.0, torch.where(label == MYO, -1.0, 0.3))
    return tio.Subject(image=tio.ScalarImage(tensor=image.unsqueeze(slice_axis)[None]),
                       label=tio.LabelMap(tensor=label.unsqueeze(slice_axis)[None]))


def planes(subject: tio.Subject, slice_axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    return subject["image"].data[0].squeeze(slice_axis), subject["label"].data[0].squeeze(slice_axis)


@pytest.mark.parametrize("slice_axis", [0, 2])
def test_cavity_shrinks_the_wall_keeps_its_area_and_the_image_follows(slice_axis):
    axes = tuple(axis for axis in range(3) if axis != slice_axis)
    transform = RandomVentricleContraction(axes=axes, cavity_codes=(LV,), smallest_ratio=0.5)
    _, before = planes(heart(slice_axis), slice_axis)
    torch.manual_seed(0)
    ratios = []
    for _ in range(6):
        image, label = planes(transform(heart(slice_axis)), slice_axis)
        cavity, wall = int((label == LV).sum()), int((label == MYO).sum())
        ratios.append(cavity / int((before == LV).sum()))
        assert 0.25 * 0.9 <= ratios[-1] <= 1.0  # radius ratio in [0.5, 1]: area in [0.25, 1]
        assert abs(wall / int((before == MYO).sum()) - 1) < 0.03  # the wall thickens, its area kept
        assert image[label == LV].median() == 2.0 and image[label == MYO].median() == -1.0  # image moved with label
        assert torch.equal(label[:4], before[:4])  # far from the heart nothing moves (the map -> identity)
        assert set(label.unique().tolist()) <= {0, MYO, LV}
    assert min(ratios) < 0.6  # strong contractions are drawn


def test_ratio_one_is_the_identity_and_no_cavity_leaves_the_patch_alone():
    subject = heart(2)
    same = RandomVentricleContraction(axes=(0, 1), cavity_codes=(LV,), smallest_ratio=1.0)(subject)
    assert torch.allclose(same["image"].data, subject["image"].data, atol=1e-5)
    assert torch.equal(same["label"].data, subject["label"].data)
    untouched = RandomVentricleContraction(axes=(0, 1), cavity_codes=(3,), smallest_ratio=0.5)(subject)
    assert torch.equal(untouched["image"].data, subject["image"].data)


def test_augmentation_contracts_only_layouts_with_a_cavity():
    def kinds(augmentation, codes):
        return {type(t).__name__ for t in augmentation.transform(2, cavity_codes=codes)}

    asked = Augmentation(contraction_probability=0.5)
    assert "RandomVentricleContraction" in kinds(asked, (LV,))
    assert "RandomVentricleContraction" not in kinds(asked, ())  # LA: no ventricle to contract
    assert "RandomVentricleContraction" not in kinds(Augmentation(), (LV,))  # off by default
    with pytest.raises(ValueError, match="contraction_ratio"):
        Augmentation(contraction_ratio=0.0)
    with pytest.raises(ValueError, match="contraction_probability"):
        Augmentation(contraction_probability=1.5)


def test_random_convolution_redraws_contrast_keeps_the_moments_and_follows_the_seed():
    from datamodules.transforms.random_convolution import RandomConvolutionIntensity

    subject = heart(2)
    original = subject["image"].data
    transform = RandomConvolutionIntensity(axes=(0, 1), copy=True)
    torch.manual_seed(5)
    first = transform(subject)["image"].data
    torch.manual_seed(5)
    assert torch.equal(first, transform(subject)["image"].data)  # a patch is a function of its seed
    outs = [transform(subject)["image"].data for _ in range(8)]
    for out in [first, *outs]:
        assert out.shape == original.shape
        assert torch.allclose(out.mean(), original.mean(), atol=1e-4) and torch.allclose(out.std(), original.std(), atol=1e-3)
    # the intensity order of the structures is not kept: some draw puts the cavity below the wall
    label = subject["label"].data
    assert any(out[label == LV].mean() < out[label == MYO].mean() for out in outs)
    assert torch.equal(transform(subject)["label"].data, label)  # labels untouched
