"""Combining the tasks' gradients of the unified model: PCGrad (Yu et al., "Gradient Surgery for
Multi-Task Learning", NeurIPS 2020) and balanced norms.

PCGrad: where two tasks' gradients point against each other (negative dot product), each loses
its component along the other before they are summed. Balance: each task's gradient is scaled to
the tasks' mean norm first. Measured on the real sample cases (benchmarks/RESULTS.md, issue 13):
summed, the MyoPS gradient is 3-5x the LA gradient and at cosine -0.14 (encoder) / -0.16 to
-0.30 (decoder) to it, which cancels most of LA's descent. Written here because none of
lightning, torch or MONAI has it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch


def check_precision_for_task_gradients(precision: str) -> None:
    """Refuses fp16 mixed precision: the per-task gradients are taken before Lightning's loss
    scaler sees the loss, so in fp16 their small values would underflow (bf16 and fp32 keep them)."""
    if precision.startswith("16"):
        raise ValueError(f"gradient_surgery / gradient_balance need precision bf16-mixed or 32-true, got {precision}: "
                         "the per-task gradients are taken without fp16 loss scaling")


def project_conflicting(task_gradients: Sequence[Sequence[torch.Tensor | None]], order_seed: int = 0,
                        project: bool = True, equal_norms: bool = False) -> list[torch.Tensor | None]:
    """PCGrad's combined gradient, per parameter.

    Args:
        task_gradients: per task, its gradient for each parameter (``None`` where the task does
            not reach that parameter), all over the same parameter list.
        order_seed: seeds the order in which each task's gradient is projected against the
            others (the paper shuffles it each step; with two tasks the order does not matter).
        project: remove conflicting components (PCGrad); False: only sum (after ``equal_norms``).
        equal_norms: first scale every task's gradient to the mean of the tasks' norms, so that
            no task's gradient dominates the step by size (and Adam's per-weight scaling of it).

    Returns:
        Per parameter, the sum over tasks of the projected gradients (``None`` where no task
        reaches it). The dot products run over all parameters together, as in the paper.
    """
    if not task_gradients:
        raise ValueError("no task gradients to combine")
    parameters = len(task_gradients[0])
    if any(len(grads) != parameters for grads in task_gradients):
        raise ValueError("every task needs a gradient entry for each parameter")
    templates = _templates(task_gradients)
    flat = []
    for grads in task_gradients:
        if all(g is None for g in grads):
            raise ValueError("a task's gradient reaches no parameter")
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(t)).flatten().float()
                               for g, t in zip(grads, templates) if t is not None]))
    # Every projected gradient is a linear combination of the original ones, so the projections
    # run on the tasks' Gram matrix (K x K numbers) and the gradients are summed once at the end,
    # instead of copying and rewriting millions of values per projection.
    tasks = len(flat)
    gram = torch.tensor([[float(torch.dot(a, b)) for b in flat] for a in flat], dtype=torch.float64)
    scale = torch.ones(tasks, dtype=torch.float64)
    if equal_norms:
        norms = gram.diagonal().sqrt()
        scale = norms.mean() / norms.clamp_min(1e-20)
        gram = gram * scale[:, None] * scale[None, :]
    coefficients = torch.eye(tasks, dtype=torch.float64)  # row i: task i's projected gradient
    rng = random.Random(order_seed)
    for i in range(tasks if project else 0):
        others = [j for j in range(tasks) if j != i]
        rng.shuffle(others)
        for j in others:
            dot = coefficients[i] @ gram[:, j]
            if dot < 0:
                coefficients[i, j] -= dot / gram[j, j].clamp_min(1e-20)
    weights = (coefficients.sum(0) * scale).tolist()
    combined = flat[0].mul_(weights[0])
    for weight, gradient in zip(weights[1:], flat[1:]):
        combined.add_(gradient, alpha=weight)
    result: list[torch.Tensor | None] = []
    offset = 0
    for template in templates:
        if template is None:
            result.append(None)
            continue
        result.append(combined[offset:offset + template.numel()].view_as(template).to(template.dtype))
        offset += template.numel()
    return result


def _templates(task_gradients: Sequence[Sequence[torch.Tensor | None]]) -> list[torch.Tensor | None]:
    """Per parameter, one task's gradient tensor to take shape and dtype from (``None`` if no task has one)."""
    return [next((grads[i] for grads in task_gradients if grads[i] is not None), None)
            for i in range(len(task_gradients[0]))]
