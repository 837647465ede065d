"""Balanced task gradients: each task's gradient scaled to the tasks' mean norm, and the module's
step built on it."""

import pytest
import torch

from datamodules.collate import collate_patches, subset_patches
from lightning_modules.training.task_gradients import BalancedTaskGradients


def test_balanced_norms_give_every_task_the_mean_size_before_summing():
    a, b = torch.tensor([4.0, 0.0]), torch.tensor([0.0, 1.0])  # norms 4 and 1: mean 2.5
    combined, = BalancedTaskGradients.combine([[a], [b]])
    assert torch.allclose(combined, torch.tensor([2.5, 2.5]))


def test_norms_run_over_all_parameters_and_gaps_and_shapes_are_kept():
    a = [torch.tensor([[3.0, 0.0]]), None, torch.tensor([4.0])]  # norm 5 over both parameters
    b = [torch.tensor([[0.0, 15.0]]), None, None]  # norm 15, reaches the first parameter only
    combined = BalancedTaskGradients.combine([a, b])
    assert combined[1] is None and combined[0].shape == (1, 2)
    assert torch.allclose(combined[0], torch.tensor([[6.0, 10.0]])) and torch.allclose(combined[2], torch.tensor([8.0]))


def test_combining_refuses_malformed_input():
    with pytest.raises(ValueError, match="no task"):
        BalancedTaskGradients.combine([])
    with pytest.raises(ValueError, match="each parameter"):
        BalancedTaskGradients.combine([[torch.ones(1)], [torch.ones(1), torch.ones(1)]])
    with pytest.raises(ValueError, match="reaches no parameter"):
        BalancedTaskGradients.combine([[torch.ones(1)], [None]])


def _sample(task, keys, generator):
    return {"image": torch.randn(1, 64, 64, generator=generator),
            "target": (torch.rand(len(keys), 64, 64, generator=generator) > 0.8).float(),
            "prompt_mask": torch.ones(len(keys), dtype=torch.bool), "prompts": [f"{k} in LGE MRI" for k in keys],
            "task": task, "center": "c", "modality": "LGE", "case_id": f"{task}-case", "structures": tuple(keys)}


def test_a_batch_subset_is_the_batch_of_those_samples_alone():
    generator = torch.Generator().manual_seed(0)
    samples = [_sample("myops", ["lv", "myo", "scar"], generator), _sample("la", ["la"], generator),
               _sample("la", ["la"], generator)]
    subset, alone = subset_patches(collate_patches(samples), [1, 2]), collate_patches(samples[1:])
    assert set(subset) == set(alone)
    for key, value in alone.items():
        assert torch.equal(subset[key], value) if isinstance(value, torch.Tensor) else subset[key] == value
    with pytest.raises(ValueError, match="empty"):
        subset_patches(alone, [])


def test_the_module_step_is_the_balanced_sum_of_the_tasks_own_gradients(in_run_folder):
    from lightning_modules.command_line.experiment import build_experiment
    from tests.test_cli import CONFIG, SMALL

    module = build_experiment(["--config", CONFIG, *SMALL, "--trainer.logger", "false"]).model
    module.task_gradients = BalancedTaskGradients()  # the recipe's (the phantom demo sums)
    module.log = lambda *args, **kwargs: None
    generator = torch.Generator().manual_seed(0)
    batch = collate_patches([_sample("la", ["la"], generator), _sample("myops", ["lv", "myo", "scar"], generator),
                             _sample("la", ["la"], generator)])
    params = [p for p in module.parameters() if p.requires_grad]

    def gradient(loss):
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])

    module.eval()  # the same function on every pass
    # each task's own gradient, weighted as its structure groups weigh in the mixed batch (1 : 3)
    assert BalancedTaskGradients.task_shares(batch) == {"la": 0.25, "myops": 0.75}
    own = {task: gradient(module._training_loss(subset_patches(batch, idx))[0] * share)
           for task, idx, share in (("la", [0, 2], 0.25), ("myops", [1], 0.75))}
    balanced = gradient(module.training_step(batch, 0))
    norms = {task: g.norm() for task, g in own.items()}
    mean = sum(norms.values()) / 2
    expected = sum(g * (mean / norms[task]) for task, g in own.items())
    # float32 sums in another order: ~1e-6 apart on gradients up to ~1
    assert torch.allclose(balanced, expected, rtol=1e-4, atol=1e-5)
    module.task_gradients = None  # summed: one backward pass over the whole batch
    plain = gradient(module.training_step(batch, 0))
    assert not torch.allclose(balanced, plain, rtol=1e-3)
    # a one-task batch is an ordinary step either way
    module.task_gradients = BalancedTaskGradients()
    la_only = subset_patches(batch, [0, 2])
    assert float(module.training_step(la_only, 0)) == pytest.approx(float(module._training_loss(la_only)[0]))


def test_fp16_mixed_precision_is_refused_for_task_gradients():
    for fine in ("32-true", "bf16-mixed", "bf16-true"):
        BalancedTaskGradients.check_precision(fine)
    with pytest.raises(ValueError, match="16-mixed"):
        BalancedTaskGradients.check_precision("16-mixed")
