"""PCGrad for the unified model: the projection itself, and the module's step built on it."""

import pytest
import torch

from datamodules.collate import collate_patches, subset_patches
from lightning_modules.gradient_surgery import project_conflicting


def test_conflicting_gradients_lose_their_components_against_each_other():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # dot -1: they conflict
    combined, = project_conflicting([[a], [b]])
    # a loses its part along b and b its part along a (the paper's rule), then they add up
    expected = (a - (-1.0 / 2.0) * b) + (b - (-1.0 / 1.0) * a)
    assert torch.allclose(combined, expected)
    assert torch.dot(combined, a) > 0 and torch.dot(combined, b) > 0  # a descent direction for both
    assert torch.dot(a + b, a) <= 0  # the plain sum is not one for a


def test_agreeing_gradients_are_summed_unchanged_and_shapes_and_gaps_kept():
    a = [torch.tensor([[1.0, 2.0]]), None, torch.tensor([0.5])]
    b = [torch.tensor([[0.5, 1.0]]), None, None]  # reaches the first parameter only
    combined = project_conflicting([a, b])
    assert combined[1] is None
    assert torch.equal(combined[0], torch.tensor([[1.5, 3.0]])) and torch.equal(combined[2], torch.tensor([0.5]))


def test_projection_refuses_malformed_input():
    with pytest.raises(ValueError, match="no task"):
        project_conflicting([])
    with pytest.raises(ValueError, match="each parameter"):
        project_conflicting([[torch.ones(1)], [torch.ones(1), torch.ones(1)]])
    with pytest.raises(ValueError, match="reaches no parameter"):
        project_conflicting([[torch.ones(1)], [None]])


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


def test_the_surgery_step_is_pcgrad_of_the_tasks_own_gradients(in_run_folder):
    from lightning_modules.experiment import build_experiment
    from tests.test_cli import CONFIG, SMALL

    module = build_experiment(["--config", CONFIG, *SMALL, "--trainer.logger", "false"]).model
    module.log = lambda *args, **kwargs: None
    generator = torch.Generator().manual_seed(0)
    samples = [_sample("la", ["la"], generator), _sample("myops", ["lv", "myo", "scar"], generator),
               _sample("la", ["la"], generator)]
    # a conflict by construction: one image, LA wants every pixel on, MyoPS every pixel off
    for sample, fill in zip(samples, (1.0, 0.0, 1.0)):
        sample["image"], sample["target"] = samples[0]["image"], torch.full_like(sample["target"], fill)
    batch = collate_patches(samples)
    params = [p for p in module.parameters() if p.requires_grad]

    def gradient(loss):
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])

    module.eval()  # the same function on every pass
    # each task's own gradient, weighted as its structure groups weigh in the mixed batch (1 : 3)
    own = {task: gradient(module._training_loss(subset_patches(batch, idx))[0] * share)
           for task, idx, share in (("la", [0, 2], 0.25), ("myops", [1], 0.75))}
    assert torch.dot(own["la"], own["myops"]) < 0
    module.gradient_surgery = False
    plain_loss = module.training_step(batch, 0)
    plain = gradient(plain_loss)
    module.gradient_surgery = True
    surgery_loss = module.training_step(batch, 0)
    step = gradient(surgery_loss)
    expected = torch.cat([g.flatten() for g in project_conflicting([[own["la"]], [own["myops"]]])])
    assert torch.allclose(step, expected, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(step, plain, rtol=1e-3)  # the conflict was projected away, not summed
    for task in own:
        assert torch.dot(step, own[task]) >= -1e-9  # no task's loss rises to first order
    # the value is the batch's loss split by task (equal to the plain loss up to how BCE counts pairs)
    assert float(surgery_loss.detach()) == pytest.approx(float(plain_loss.detach()), rel=0.2)
    # a one-task batch is an ordinary step
    la_only = subset_patches(batch, [0, 2])
    assert float(module.training_step(la_only, 0)) == pytest.approx(float(module._training_loss(la_only)[0]))


def test_balanced_norms_give_every_task_the_mean_size_before_combining():
    a, b = torch.tensor([4.0, 0.0]), torch.tensor([0.0, 1.0])  # norms 4 and 1: mean 2.5
    combined, = project_conflicting([[a], [b]], project=False, equal_norms=True)
    assert torch.allclose(combined, torch.tensor([2.5, 2.5]))
    c = torch.tensor([-4.0, 1.0])  # conflicts with b, but project=False is a plain sum
    plain, = project_conflicting([[c], [b]], project=False)
    assert torch.equal(plain, c + b)


def _paper_rule(task_gradients, order_seed, equal_norms):
    """PCGrad as the paper writes it: each task's copy projected in turn against the others' originals."""
    import random
    flat = [g.clone() for g in task_gradients]
    if equal_norms:
        norms = torch.stack([g.norm() for g in flat])
        flat = [g * (norms.mean() / norm) for g, norm in zip(flat, norms)]
    rng, total = random.Random(order_seed), torch.zeros_like(flat[0])
    for i, own in enumerate(flat):
        g, others = own.clone(), [j for j in range(len(flat)) if j != i]
        rng.shuffle(others)
        for j in others:
            dot = torch.dot(g, flat[j])
            if dot < 0:
                g -= dot / flat[j].pow(2).sum() * flat[j]
        total += g
    return total


@pytest.mark.parametrize("equal_norms", [False, True])
def test_three_tasks_follow_the_papers_sequential_rule(equal_norms):
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(40, generator=generator) * scale for scale in (1.0, 3.0, 0.5)]
    grads[1] = -grads[0] * 2 + 0.5 * torch.randn(40, generator=generator)  # two tasks in conflict
    for seed in range(3):
        split = [[g[:30].view(5, 6), g[30:]] for g in grads]  # two parameters per task
        combined = project_conflicting(split, order_seed=seed, equal_norms=equal_norms)
        expected = _paper_rule(grads, seed, equal_norms)
        assert torch.allclose(torch.cat([combined[0].flatten(), combined[1]]), expected, atol=1e-5)


def test_fp16_mixed_precision_is_refused_for_task_gradients():
    from lightning_modules.gradient_surgery import check_precision_for_task_gradients
    for fine in ("32-true", "bf16-mixed", "bf16-true"):
        check_precision_for_task_gradients(fine)
    with pytest.raises(ValueError, match="16-mixed"):
        check_precision_for_task_gradients("16-mixed")
