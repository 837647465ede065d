import pytest
import torch

from lightning_modules.training.losses import PartialLabelLoss


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


def test_batch_dice_pools_each_structure_over_the_batch():
    # structure "a" sits at prompt 0 of sample 0 and prompt 1 of sample 1: one pooled Dice
    logits = torch.randn(2, 2, 8, 8)
    target = (torch.rand(2, 2, 8, 8) > 0.5).float()
    mask = torch.tensor([[True, False], [False, True]])
    loss = PartialLabelLoss(dice_weight=1.0, bce_weight=0.0, smooth=1.0)
    p = torch.sigmoid(torch.stack([logits[0, 0], logits[1, 1]]))
    t = torch.stack([target[0, 0], target[1, 1]])
    expected = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    got = loss(logits, target, mask, [["a", "b"], ["b", "a"]])
    assert torch.isclose(got, expected, atol=1e-6)


def test_batch_dice_averages_structures_not_pairs():
    logits = torch.randn(3, 2, 8, 8)
    target = (torch.rand(3, 2, 8, 8) > 0.5).float()
    mask = torch.ones(3, 2, dtype=torch.bool)
    loss = PartialLabelLoss(dice_weight=1.0, bce_weight=0.0)
    names = [["a", "b"], ["a", "b"], ["a", "b"]]

    def pooled(j):
        p, t = torch.sigmoid(logits[:, j]), target[:, j]
        return 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)

    assert torch.isclose(loss(logits, target, mask, names), (pooled(0) + pooled(1)) / 2, atol=1e-6)


def test_false_positives_on_an_empty_patch_cost_less_with_batch_dice():
    # the failure batch Dice fixes: a few stray pixels where the structure is absent
    target = torch.zeros(2, 1, 16, 16)
    target[0, 0, 4:12, 4:12] = 1
    logits = (target * 2 - 1) * 10
    logits[1, 0, :2, :2] = 10  # 4 false-positive pixels on the empty sample
    mask = torch.ones(2, 1, dtype=torch.bool)
    names = [["a"], ["a"]]
    pooled = PartialLabelLoss(bce_weight=0.0)(logits, target, mask, names)
    per_pair = PartialLabelLoss(bce_weight=0.0, batch_dice=False)(logits, target, mask, names)
    assert pooled < 0.05 < per_pair


def test_annotated_prompt_without_structure_key_raises():
    with pytest.raises(ValueError, match="no group name"):
        PartialLabelLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 2, dtype=torch.bool), [["a"]])


def test_training_logs_the_loss_of_each_task_and_structure(in_run_folder):
    import vocabulary
    from lightning_modules.command_line.experiment import build_experiment
    from tests.test_cli import CONFIG, SMALL

    module = build_experiment(["--config", CONFIG, *SMALL, "--trainer.logger", "false"]).model
    generator = torch.Generator().manual_seed(0)

    def batch(samples):  # samples: (task, structures) pairs, padded to the longest prompt list
        width = max(len(keys) for _, keys in samples)
        prompts = [[vocabulary.prompt(k, "LGE") for k in keys] + [None] * (width - len(keys)) for _, keys in samples]
        return {"image": torch.randn(len(samples), 1, 64, 64, generator=generator),
                "target": (torch.rand(len(samples), width, 64, 64, generator=generator) > 0.8).float(),
                "prompt_mask": torch.tensor([[p is not None for p in row] for row in prompts]), "prompts": prompts,
                "task": [t for t, _ in samples], "structures": [tuple(keys) for _, keys in samples]}

    def logged_by(step_batch):
        logged = {}
        module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
        module.training_step(step_batch, 0)
        return logged

    module.eval()  # no dropout anywhere, but be explicit: the two passes must match
    mixed = batch([("la", ["la"]), ("myops", ["lv", "myo", "scar"])])
    logged = logged_by(mixed)
    assert set(logged) == {"train/loss", "train/loss/la", "train/loss/la/la", "train/loss/myops",
                           "train/loss/myops/lv", "train/loss/myops/myo", "train/loss/myops/scar"}
    # a task's loss is its samples' loss alone, whatever else was in the batch
    alone = {key: tensor[:1] if key in ("image", "prompt_mask") else tensor for key, tensor in mixed.items()}
    alone = {**alone, "target": mixed["target"][:1, :1], "prompt_mask": mixed["prompt_mask"][:1, :1],
             "prompts": [mixed["prompts"][0][:1]], "task": ["la"], "structures": [("la",)]}
    assert logged_by(alone)["train/loss/la"] == pytest.approx(logged["train/loss/la"], rel=1e-4)


def test_loss_parts_are_each_group_and_task_on_its_own():
    torch.manual_seed(0)
    loss = PartialLabelLoss()
    logits, target = torch.randn(3, 3, 16, 16), (torch.rand(3, 3, 16, 16) > 0.7).float()
    mask = torch.tensor([[True, False, False], [True, True, True], [True, True, True]])
    groups = [["la/la", None, None], ["myops/lv", "myops/myo", "myops/scar"], ["myops/lv", "myops/myo", "myops/scar"]]
    parts = loss.parts(logits, target, mask, groups)
    assert set(parts) == {"la", "la/la", "myops", "myops/lv", "myops/myo", "myops/scar"}
    assert parts["la"] == pytest.approx(float(loss(logits[:1, :1], target[:1, :1], mask[:1, :1], [["la/la"]])))
    assert parts["myops"] == pytest.approx(float(loss(logits[1:], target[1:], mask[1:], groups[1:])))
    only_scar = torch.zeros_like(mask)
    only_scar[1:, 2] = True
    assert parts["myops/scar"] == pytest.approx(float(loss(logits, target, only_scar, groups)))
