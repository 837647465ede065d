"""The suspects of `benchmarks/shift_controls.py` change what they say and nothing else."""

from __future__ import annotations

import sys

import torch

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import shift_controls  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def test_gamma_bends_mid_tones_keeps_the_order_and_z_scores_again():
    image = torch.linspace(-2.0, 3.0, 60).reshape(1, 1, 3, 4, 5)
    for power in shift_controls.GAMMAS:
        forward, inverse = shift_controls.gamma(power)
        curved = forward(image, [2, 3])
        assert torch.equal(curved.flatten().argsort(), image.flatten().argsort())  # intensity order kept
        assert abs(float(curved.mean())) < 1e-5 and abs(float(curved.std()) - 1) < 1e-5
        unit = (image - image.min()) / (image.max() - image.min())
        expected = unit ** power
        torch.testing.assert_close(curved, (expected - expected.mean()) / expected.std())
        assert not torch.allclose(curved, (unit - unit.mean()) / unit.std(), atol=1e-2)  # the mid-tones moved
        logits = torch.randn(1, 2, 3, 4, 5)
        assert torch.equal(inverse(logits, [2, 3]), logits)  # the anatomy did not move: logits come back as they are
