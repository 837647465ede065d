"""Augmentation: in-plane only, labels kept binary, every in-plane orientation when asked."""

import numpy as np
import pytest
import torch
import torchio as tio

from datamodules.transforms.augmentation import Augmentation
from datamodules.transforms.brightness_contrast import RandomBrightnessContrast


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


def test_every_in_plane_orientation_when_asked_and_the_slice_axis_kept():
    base = torch.arange(16 * 16, dtype=torch.float32).reshape(1, 16, 16, 1)
    subject = tio.Subject(image=tio.ScalarImage(tensor=base), label=tio.LabelMap(tensor=(base > 100).int()))
    same = Augmentation(probability=0.0, max_downsampling=1.0).transform(2)
    turned = Augmentation(probability=0.0, max_downsampling=1.0, orientation_probability=1.0).transform(2)
    torch.manual_seed(0)
    assert torch.equal(same(subject)["image"].data, base)
    plane = base[0, :, :, 0]
    expected = [torch.rot90(p, k).flatten() for p in (plane, plane.flip(0)) for k in range(4)]
    found = set()
    for _ in range(80):
        out = turned(subject)
        image, label = out["image"].data[0, :, :, 0], out["label"].data[0, :, :, 0]
        assert torch.equal(label, (image > 100).int())  # the label turns with its image
        found |= {i for i, e in enumerate(expected) if torch.equal(image.flatten(), e)}
    assert found == set(range(8))  # each of the 8 orientations, and nothing else (exact permutations)


def test_a_plane_that_is_not_square_gets_half_turns_only():
    from datamodules.transforms.orientation import RandomInPlaneOrientation

    image = torch.randn(1, 1, 12, 20)
    torch.manual_seed(0)
    for _ in range(20):
        out = RandomInPlaneOrientation(axes=(1, 2))(tio.Subject(image=tio.ScalarImage(tensor=image)))
        assert out["image"].shape == image.shape
    with pytest.raises(ValueError, match="two different spatial axes"):
        RandomInPlaneOrientation(axes=(1, 1))


def test_costly_resamplings_are_left_out_when_their_ranges_are_zero():
    def kinds(augmentation):
        return {type(t).__name__ for t in augmentation.transform(2)}

    assert {"RandomAffine", "RandomLowResolution"} <= kinds(Augmentation())
    assert not {"RandomAffine", "RandomLowResolution"} & kinds(Augmentation(rotation_degrees=0, scale=0, max_downsampling=1))
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
    with pytest.raises(ValueError, match="orientation_probability"):
        Augmentation(orientation_probability=2.0)


@pytest.mark.parametrize("shape", [(96, 96, 96), (95, 64, 1), (1, 33, 40), (7, 5, 3)])
def test_separable_bias_field_is_torchio_s_field_and_draw(shape):
    import torchio as tio
    from torchio.transforms.augmentation.intensity.random_bias_field import BiasField

    from datamodules.transforms.bias_field import (
        SeparableRandomBiasField,
        polynomial_bias_field,
    )

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


@pytest.mark.parametrize("shape", [(40, 36, 1), (1, 40, 36), (24, 20, 16)])
def test_low_resolution_draws_as_torchio_s_anisotropy_and_degrades_alike(shape):
    from datamodules.transforms.low_resolution import RandomLowResolution

    axes = tuple(axis for axis in range(3) if shape[axis] > 1)[:2]
    # stripes of a period of ~9 voxels along every axis: a 2-3x coarser grid blurs them on any axis
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    image = sum(torch.sin(g / 1.5) for g in grids)[None]
    label = (image > 0).to(torch.int16)
    outputs = []
    for transform in (tio.RandomAnisotropy(axes=axes, downsampling=(2.0, 3.0)),
                      RandomLowResolution(axes=axes, downsampling=(2.0, 3.0)),
                      RandomLowResolution(axes=axes, downsampling=(2.0, 3.0))):
        torch.manual_seed(5)  # the same draws of axis and factor from torch's generator
        subject = transform(tio.Subject(image=tio.ScalarImage(tensor=image.clone()), label=tio.LabelMap(tensor=label)))
        outputs.append(subject["image"].data)
        assert torch.equal(subject["label"].data, label)  # labels untouched
    theirs, ours, again = outputs
    assert torch.equal(ours, again)  # a function of the seed
    assert ours.shape == image.shape and ours.dtype == image.dtype
    inside = tuple(slice(2, n - 2) if n > 4 else slice(None) for n in shape)  # TorchIO pads its edges
    loss_theirs = (theirs[0][inside] - image[0][inside]).abs().mean()
    loss_ours = (ours[0][inside] - image[0][inside]).abs().mean()
    assert loss_ours > 0.05  # detail is lost ...
    assert abs(float(loss_ours - loss_theirs)) < 0.5 * float(loss_theirs)  # ... about as much as TorchIO loses
    # and on a grid centred as TorchIO's (a coarse grid started at the first voxel, torch's
    # "nearest", shifts the image by up to a voxel and loses 2.5x as much)
    assert (ours[0][inside] - theirs[0][inside]).abs().mean() < float(loss_theirs)


def test_low_resolution_refuses_bad_ranges():
    from datamodules.transforms.low_resolution import RandomLowResolution

    with pytest.raises(ValueError, match="downsampling"):
        RandomLowResolution(downsampling=(0.5, 2.0))
    with pytest.raises(ValueError, match="axes"):
        RandomLowResolution(axes=(3,))
