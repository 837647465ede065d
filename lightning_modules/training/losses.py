"""Partial-label loss: only prompts annotated for a sample count."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn


class PartialLabelLoss(nn.Module):
    """Dice + BCE over the annotated prompts of a batch; unannotated prompts count for nothing.

    Structures a dataset does not annotate are never negatives: they are left out of both terms,
    so they get exactly zero gradient.

    Dice is pooled per group over the batch by default (nnU-Net's "batch Dice"): all annotated
    (sample, prompt) pairs of one group form one Dice. The module groups by task and structure,
    so the left atrium of whole-heart CT is not drowned by the large atria of the LA task. Per-sample Dice on small
    patches punishes every false-positive pixel on a patch where the structure is absent with a
    loss of nearly 1, which on the phantoms drove small structures (atria, great vessels) to an
    all-zero prediction; pooled Dice does not. Prompt order differs between tasks, so the pooling
    is by group name, which MONAI's ``DiceLoss(batch=True)`` (pooling per channel) cannot
    express on its own: the pairs of each structure are gathered first, then MONAI scores them.

    Args:
        dice_weight: weight of the soft Dice term.
        bce_weight: weight of the binary cross-entropy term (mean over pixels of annotated prompts).
        smooth: Dice smoothing (numerator and denominator); 1 keeps empty targets well behaved.
        batch_dice: pool Dice per group over the batch when group names are given; False
            scores every (sample, prompt) pair on its own.
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, smooth: float = 1.0,
                 batch_dice: bool = True):
        super().__init__()
        if dice_weight < 0 or bce_weight < 0 or dice_weight + bce_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got {dice_weight}, {bce_weight}")
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.batch_dice = batch_dice
        self.pair_dice = DiceLoss(sigmoid=True, reduction="none", smooth_nr=smooth, smooth_dr=smooth)
        self.pooled_dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=smooth, smooth_dr=smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, prompt_mask: torch.Tensor,
                groups: Sequence[Sequence[str | None]] | None = None) -> torch.Tensor:
        """Loss of logits ``[B, P, *S]`` against binary targets of the same shape.

        Args:
            prompt_mask: ``[B, P]``, True where the prompt is annotated for that sample.
            groups: per sample, the group name of each prompt (shorter lists are padding), such
                as ``"whs/la"``; needed for batch Dice, ignored otherwise.
        """
        if logits.shape != target.shape or logits.shape[:2] != prompt_mask.shape:
            raise ValueError(f"shapes differ: logits {tuple(logits.shape)}, target {tuple(target.shape)}, "
                             f"prompt_mask {tuple(prompt_mask.shape)}")
        if not prompt_mask.any():
            return logits.sum() * 0.0  # nothing annotated: a zero that keeps the graph
        pairs, chosen_logits, chosen_target = self._annotated_pairs(logits, target, prompt_mask)
        loss = logits.new_zeros(())
        if self.dice_weight:
            loss = loss + self.dice_weight * self._dice(chosen_logits, chosen_target, pairs, groups)
        if self.bce_weight:
            loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(chosen_logits, chosen_target)
        return loss

    def _task_losses(self, logits: torch.Tensor, target: torch.Tensor, pairs: torch.Tensor,
                     groups: Sequence[Sequence[str | None]], with_groups: bool = False) -> dict[str, torch.Tensor]:
        """Each task's loss (mean of its groups' Dice terms plus the BCE of its pairs), and with
        ``with_groups`` each group's (its Dice term plus its pairs' BCE)."""
        members = self._group_members(pairs, groups)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
        dice = {name: self._group_dice(logits, target, index) for name, index in members.items()} \
            if self.dice_weight else {name: logits.new_zeros(()) for name in members}
        tasks: dict[str, list[str]] = {}
        for name in members:
            tasks.setdefault(name.split("/")[0], []).append(name)
        result = {}
        if with_groups:
            for name, index in members.items():
                result[name] = self.dice_weight * dice[name] + self.bce_weight * bce[index].mean()
        for task, names in tasks.items():
            index = [i for name in names for i in members[name]]
            result[task] = (self.dice_weight * torch.stack([dice[n] for n in names]).mean()
                            + self.bce_weight * bce[index].mean())
        return result

    @staticmethod
    def _annotated_pairs(logits: torch.Tensor, target: torch.Tensor, prompt_mask: torch.Tensor):
        """The annotated (sample, prompt) pairs ``[N, 2]`` and their logits and targets ``[N, 1, *S]``."""
        # selecting the annotated pairs (not multiplying by a mask) keeps the others' gradient
        # exactly zero even where their terms would be inf/NaN
        pairs = prompt_mask.nonzero(as_tuple=False)
        return pairs, logits[pairs[:, 0], pairs[:, 1]].unsqueeze(1), target[pairs[:, 0], pairs[:, 1]].unsqueeze(1)

    @staticmethod
    def _group_members(pairs: torch.Tensor, groups: Sequence[Sequence[str | None]]) -> dict[str, list[int]]:
        """Group name -> indices (into ``pairs``) of its annotated pairs."""
        members: dict[str, list[int]] = {}
        for index, (sample, prompt) in enumerate(pairs.tolist()):
            if prompt >= len(groups[sample]) or groups[sample][prompt] is None:
                raise ValueError(f"prompt {prompt} of sample {sample} is annotated but has no group name")
            members.setdefault(groups[sample][prompt], []).append(index)
        return members

    def _group_dice(self, logits: torch.Tensor, target: torch.Tensor, index: list[int]) -> torch.Tensor:
        """The Dice term of one group's pairs: pooled over them (batch Dice) or their mean."""
        if self.batch_dice:
            return self.pooled_dice(logits[index], target[index])
        return self.pair_dice(logits[index], target[index]).mean()

    def _dice(self, logits: torch.Tensor, target: torch.Tensor, pairs: torch.Tensor,
              groups: Sequence[Sequence[str | None]] | None) -> torch.Tensor:
        if not self.batch_dice or groups is None:
            return self.pair_dice(logits, target).mean()
        members = self._group_members(pairs, groups)
        return torch.stack([self._group_dice(logits, target, index) for index in members.values()]).mean()

    @torch.no_grad()
    def parts(self, logits: torch.Tensor, target: torch.Tensor, prompt_mask: torch.Tensor,
              groups: Sequence[Sequence[str]]) -> dict[str, torch.Tensor]:
        """The loss of each group alone (``{"la/la": ..., "myops/scar": ...}``) and of each
        task (the part of a group name before ``/``), from one pass over the batch: a task's
        loss is the mean of its groups' Dice terms plus the BCE of its pairs, exactly what
        ``forward`` gives for a batch of that task's samples alone. For logging, without gradients."""
        pairs, chosen_logits, chosen_target = self._annotated_pairs(logits.float(), target.float(), prompt_mask)
        if not len(pairs):
            return {}
        return self._task_losses(chosen_logits, chosen_target, pairs, groups, with_groups=True)
