"""How the tasks of a mixed batch make one gradient: each task's gradient scaled to the tasks'
mean norm, then summed. On the real sample cases the summed MyoPS gradient was 3-5x LA's and
drowned it (``benchmarks/DECISIONS.md``, "gradient balance"). Written here because none of
lightning, torch or MONAI combines per-task gradients."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from datamodules.collate import subset_patches


class BalancedTaskGradients:
    """Scales each task's gradient in a mixed batch to the mean of the tasks' norms before summing,
    so no task dominates the step (and Adam's per-weight scaling) by the size of its gradient.

    Each task's samples go forward and backward alone (the compute of the whole batch at once).
    The returned loss has the batch's loss as its value and the combined gradient as its
    gradient, so Lightning's backward, clipping, accumulation, precision and DDP handle it as any
    loss. fp16 mixed precision is refused (``check_precision``): the per-task gradients are taken
    before Lightning's loss scaler sees the loss.
    """

    @staticmethod
    def check_precision(precision: str) -> None:
        if precision.startswith("16"):
            raise ValueError(f"task_gradients (BalancedTaskGradients) needs precision bf16-mixed or 32-true, got "
                             f"{precision}: the per-task gradients are taken without fp16 loss scaling")

    @staticmethod
    def task_shares(batch: dict) -> dict[str, float]:
        """Each task's share of a batch's annotated structure groups: the weight its loss has in
        the summed loss's Dice term (LA 1 of 4 beside MyoPS's 3)."""
        annotated = {(task, key) for task, keys, mask in zip(batch["task"], batch["structures"], batch["prompt_mask"])
                     for key, on in zip(keys, mask.tolist()) if on}
        counts = {task: max(sum(t == task for t, _ in annotated), 1) for task in set(batch["task"])}
        return {task: count / sum(counts.values()) for task, count in counts.items()}

    @staticmethod
    def combine(task_gradients: Sequence[Sequence[torch.Tensor | None]]) -> list[torch.Tensor | None]:
        """Per parameter, the sum over tasks of each task's gradient scaled to the tasks' mean norm
        (``None`` where no task reaches the parameter). Norms run over all parameters together."""
        if not task_gradients:
            raise ValueError("no task gradients to combine")
        if any(len(grads) != len(task_gradients[0]) for grads in task_gradients):
            raise ValueError("every task needs a gradient entry for each parameter")
        if any(all(g is None for g in grads) for grads in task_gradients):
            raise ValueError("a task's gradient reaches no parameter")
        # per parameter, one task's gradient to take shape and dtype from (None: no task reaches it)
        templates = [next((g for g in parameter if g is not None), None) for parameter in zip(*task_gradients)]
        flat = [torch.cat([(g if g is not None else torch.zeros_like(t)).flatten().float()
                           for g, t in zip(grads, templates) if t is not None]) for grads in task_gradients]
        norms = torch.tensor([float(torch.dot(f, f)) for f in flat], dtype=torch.float64).sqrt()
        scales = (norms.mean() / norms.clamp_min(1e-20)).tolist()
        combined = flat[0].mul_(scales[0])
        for scale, gradient in zip(scales[1:], flat[1:]):
            combined.add_(gradient, alpha=scale)
        result: list[torch.Tensor | None] = []
        offset = 0
        for template in templates:
            if template is None:
                result.append(None)
                continue
            result.append(combined[offset:offset + template.numel()].view_as(template).to(template.dtype))
            offset += template.numel()
        return result

    def __call__(self, batch: dict, task_loss: Callable[[dict], torch.Tensor],
                 parameters: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to back-propagate and its value, for a batch of several tasks; ``task_loss``
        gives the loss of a sub-batch (and may log its parts)."""
        shares = self.task_shares(batch)
        gradients, value = [], torch.zeros(())
        for task in sorted(set(batch["task"])):
            subset = subset_patches(batch, [i for i, t in enumerate(batch["task"]) if t == task])
            weighted = task_loss(subset) * shares[task]
            gradients.append(torch.autograd.grad(weighted, parameters, allow_unused=True))
            value = value + weighted.detach().float()
        combined = self.combine(gradients)
        carrier = sum((p * g).sum() for p, g in zip(parameters, combined) if g is not None)
        return carrier - carrier.detach() + value, value
