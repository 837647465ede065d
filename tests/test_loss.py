import pytest
import torch

from lightning_modules.losses import PartialLabelLoss


def test_unannotated_prompts_get_exactly_zero_gradient():
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = (torch.rand(2, 3, 16, 16) > 0.5).float()
    mask = torch.tensor([[True, False, True], [False, False, True]])
    PartialLabelLoss()(logits, target, mask).backward()
    assert (logits.grad[~mask] == 0).all()
    assert (logits.grad[mask].abs().sum(dim=(-1, -2)) > 0).all()


def test_loss_does_not_depend_on_unannotated_targets():
    logits = torch.randn(1, 2, 8, 8)
    target = torch.zeros(1, 2, 8, 8)
    mask = torch.tensor([[True, False]])
    other = target.clone()
    other[0, 1] = 1
    loss = PartialLabelLoss()
    assert loss(logits, target, mask) == loss(logits, other, mask)


def test_perfect_prediction_scores_lower_than_wrong_one():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss = PartialLabelLoss()
    assert loss((target * 2 - 1) * 20, target, mask) < loss((1 - target * 2) * 20, target, mask)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="weights"):
        PartialLabelLoss(0.0, 0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        PartialLabelLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(1, 2, dtype=torch.bool))
