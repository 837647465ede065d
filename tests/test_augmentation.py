"""Augmentation: in-plane only, labels kept binary, flips only where a task allows them."""

import numpy as np
import pytest
import torch
import torchio as tio

from datamodules.augmentation import Augmentation
from datamodules.intensity_augmentation import RandomBrightnessContrast


def patch(slice_axis: int):
    shape = [32, 32, 32]
    shape[slice_axis] = 1
    label = torch.zeros(1, *shape, dtype=torch.int32)
    index = [slice(None)] * 4
    index[1 + (0 if slice_axis != 0 else 1)] = slice(0, 8)  # structure on one side of the slice
    label[tuple(index)] = 1
    return tio.Subject(image=tio.ScalarImage(tensor=label.float() + 0.1 * torch.randn(1, *shape)),
                       label=tio.LabelMap(tensor=label))


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_every_transform_keeps_the_patch_shape_and_binary_labels(slice_axis):
    transform = Augmentation(probability=1.0, brightness=0.25, contrast=0.25).transform(slice_axis)
    torch.manual_seed(0)
    for _ in range(5):
        out = transform(patch(slice_axis))
        assert out["image"].shape == out["label"].shape == patch(slice_axis)["image"].shape
        assert set(out["label"].data.unique().tolist()) <= {0, 1}


def test_flips_only_when_asked_and_only_in_plane():
    subject = patch(2)
    side = subject["label"].data[0, :8].sum()
    no_flip = Augmentation(probability=0.0, max_downsampling=1.0).transform(2)
    flip = Augmentation(probability=0.0, max_downsampling=1.0, flip_tasks=["la"]).transform(2, flip=True)
    torch.manual_seed(0)
    assert all(no_flip(patch(2))["label"].data[0, :8].sum() == side for _ in range(10))
    moved = [flip(patch(2))["label"].data[0, :8].sum() != side for _ in range(20)]
    assert any(moved) and not all(moved)  # mirrored about half of the time


def test_costly_resamplings_are_left_out_when_their_ranges_are_zero():
    def kinds(augmentation):
        return {type(t).__name__ for t in augmentation.transform(2)}

    assert {"RandomAffine", "RandomAnisotropy"} <= kinds(Augmentation())
    assert not {"RandomAffine", "RandomAnisotropy"} & kinds(Augmentation(rotation_degrees=0, scale=0, max_downsampling=1))
    assert "RandomAffine" in kinds(Augmentation(rotation_degrees=0))  # scaling alone still resamples


def test_brightness_contrast_follows_the_seed_keeps_the_range_and_zero():
    image = torch.randn(1, 16, 16, 1)
    image[:, :4] = 0.0  # padding
    subject = tio.Subject(image=tio.ScalarImage(tensor=image))
    only_brightness = RandomBrightnessContrast(brightness=0.25, contrast=0.0, copy=True)
    torch.manual_seed(3)
    first = only_brightness(subject)["image"].data
    torch.manual_seed(3)
    assert torch.equal(first, only_brightness(subject)["image"].data)  # a patch is a function of its seed
    ratio = first[:, 4:] / image[:, 4:]
    assert torch.allclose(ratio, ratio.flatten()[0]) and 0.75 <= ratio.flatten()[0] <= 1.25
    assert torch.all(first[:, :4] == 0)  # padding stays padding
    contrast = RandomBrightnessContrast(brightness=0.0, contrast=0.5, copy=True)
    outs = [contrast(subject)["image"].data for _ in range(10)]
    assert all(out.min() >= image.min() - 1e-6 and out.max() <= image.max() + 1e-6 for out in outs)
    assert any(not torch.allclose(out, image) for out in outs)


def test_bad_augmentation_settings_raise():
    with pytest.raises(ValueError, match="brightness"):
        Augmentation(brightness=1.5)
    with pytest.raises(ValueError, match="max_downsampling"):
        Augmentation(max_downsampling=0.5)
    with pytest.raises(ValueError, match="unknown task"):
        Augmentation(flip_tasks=["brain"])


@pytest.mark.parametrize("shape", [(96, 96, 96), (95, 64, 1), (1, 33, 40), (7, 5, 3)])
def test_separable_bias_field_is_torchio_s_field_and_draw(shape):
    import torchio as tio
    from torchio.transforms.augmentation.intensity.random_bias_field import BiasField

    from datamodules.bias_field import SeparableRandomBiasField, polynomial_bias_field

    coefficients = list(np.random.default_rng(0).uniform(-0.3, 0.3, 20))
    expected = BiasField.generate_bias_field(torch.zeros(1, *shape), 3, coefficients)
    np.testing.assert_allclose(polynomial_bias_field(shape, 3, coefficients).numpy(), expected, rtol=1e-6)
    image = torch.randn(1, *shape)
    outputs = []
    for transform in (tio.RandomBiasField(coefficients=0.3), SeparableRandomBiasField(coefficients=0.3)):
        torch.manual_seed(1)  # the same draw of coefficients from torch's generator
        outputs.append(transform(tio.Subject(image=tio.ScalarImage(tensor=image.clone()))).image.data)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-6, atol=1e-6)
    assert not torch.equal(outputs[1], image)
