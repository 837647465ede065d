"""The heart-centred second window: it answers where the sliding windows cut the heart, and only there."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SliceInferer

from lightning_modules.command_line.experiment import build_experiment
from lightning_modules.inference.heart_centred_inferer import (
    HeartCentredSliceInferer,
    interior_weight,
)
from tests.conftest import REPO
from tests.test_cli import CONFIG

WINDOW, SIDE, START = 16, 8, 11  # 40-voxel slices, windows at 0, 12, 24: a heart at 11..18 is in none whole


def heart_image() -> torch.Tensor:
    """``[1, 1, 40, 40, 3]``, a square "heart" (value 1) at 11..18 on every slice."""
    image = torch.zeros(1, 1, 40, 40, 3)
    image[0, 0, START:START + SIDE, START:START + SIDE] = 1
    return image


def window_bound_network(window: torch.Tensor) -> torch.Tensor:
    """The window probe's finding, made exact: a heart voxel's logit grows with the share of the
    heart its window holds (positive above 60 %), every other voxel -5."""
    heart = window == 1
    share = heart.flatten(1).sum(1).float().view(-1, 1, 1, 1) / SIDE ** 2
    return torch.where(heart, 10 * share - 6, torch.tensor(-5.0))


def inferers(**options):
    options = {"roi_size": (WINDOW, WINDOW), "overlap": 0.25, "mode": "constant", **options}
    return SliceInferer(spatial_dim=2, **options), HeartCentredSliceInferer(spatial_dim=2, **options)


def test_interior_weight_is_one_inside_and_falls_to_the_edges():
    weight = interior_weight((16, 8), margin=0.25)
    assert weight.shape == (16, 8)
    assert weight[4:12, 2:6].eq(1).all()
    assert weight[0, 0] < weight[1, 1] < weight[3, 3] <= 1
    assert torch.allclose(weight, weight.flip(0)) and torch.allclose(weight, weight.flip(1))


def test_a_heart_cut_by_the_sliding_windows_is_found_whole_by_the_centred_window():
    sliding, centred = inferers()
    image = heart_image()
    heart = image[0, 0] == 1
    first = sliding(image, window_bound_network)[0, 0]
    # only the corner held by the window at (12, 12) and no other is found
    assert 0 < int((first > 0).sum()) < int(heart.sum())
    second = centred(image, window_bound_network)[0, 0]
    assert torch.equal(second > 0, heart)  # the whole heart, nothing else
    # away from the centred window (at 9..24) the sliding windows' answer stands
    assert torch.equal(second[30:], first[30:]) and torch.equal(second[:, 30:], first[:, 30:])


def test_nothing_marked_leaves_the_sliding_answer_and_runs_no_second_pass():
    sliding, centred = inferers(sw_batch_size=64)
    calls = []

    def nothing(window):
        calls.append(len(window))
        return torch.full_like(window, -3.0)

    assert torch.equal(centred(heart_image(), nothing), sliding(heart_image(), lambda w: torch.full_like(w, -3.0)))
    assert len(calls) == 1  # the sliding windows' one batch, no centred window


def test_bad_margin_and_a_batch_of_volumes_are_refused():
    with pytest.raises(ValueError, match="margin"):
        HeartCentredSliceInferer((WINDOW, WINDOW), margin=0.0)
    with pytest.raises(ValueError, match="one volume at a time"):
        HeartCentredSliceInferer((WINDOW, WINDOW))(heart_image().expand(2, -1, -1, -1, -1), window_bound_network)


def test_the_leave_out_experiment_infers_with_it_at_its_patch_size(in_run_folder):
    cli = build_experiment(["--config", CONFIG, "--config", str(REPO / "experiments" / "unseen_center.yaml"),
                            "--data.patch_size", "[48, 48]", "--trainer.logger", "false"])
    assert isinstance(cli.model.inferer, HeartCentredSliceInferer)
    assert list(cli.model.inferer.roi_size) == [48, 48]
