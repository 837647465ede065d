"""Partial-label loss: only prompts annotated for a sample count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn


class PartialLabelLoss(nn.Module):
    """Dice + BCE per (sample, prompt), averaged over annotated prompts only.

    Structures a dataset does not annotate are never negatives: their terms are multiplied by a
    zero mask, so they get exactly zero gradient. MONAI's ``DiceLoss`` gives the per-prompt
    Dice; the masked average is the part MONAI has no option for.

    Args:
        dice_weight: weight of the soft Dice term.
        bce_weight: weight of the binary cross-entropy term.
        smooth: Dice smoothing (numerator and denominator); 1 keeps empty targets well behaved.
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, smooth: float = 1.0):
        super().__init__()
        if dice_weight < 0 or bce_weight < 0 or dice_weight + bce_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got {dice_weight}, {bce_weight}")
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.dice = DiceLoss(sigmoid=True, reduction="none", smooth_nr=smooth, smooth_dr=smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape or logits.shape[:2] != prompt_mask.shape:
            raise ValueError(f"shapes differ: logits {tuple(logits.shape)}, target {tuple(target.shape)}, "
                             f"prompt_mask {tuple(prompt_mask.shape)}")
        per_prompt = self.dice_weight * self.dice(logits, target).flatten(2).mean(-1)
        per_prompt = per_prompt + self.bce_weight * F.binary_cross_entropy_with_logits(
            logits, target, reduction="none").flatten(2).mean(-1)
        mask = prompt_mask.to(per_prompt.dtype)
        # torch.where, not a product: a masked prompt whose term is inf/NaN must still give zero gradient
        masked = torch.where(prompt_mask, per_prompt, torch.zeros_like(per_prompt))
        return masked.sum() / mask.sum().clamp(min=1.0)
