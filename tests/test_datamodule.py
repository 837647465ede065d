import numpy as np
import pytest
import torch

from datamodules.datamodule import CareDataModule
from datamodules.preprocessing import Preprocessing
from datamodules.sampling import PatchDraw, WeightedCaseSampler, case_weights
from datamodules.transforms.augmentation import Augmentation
from tests.conftest import phantom_sources

PREP = Preprocessing(target_spacing={"la": 1.5, "whs": 2.0, "myops": 1.5})


@pytest.fixture(scope="module")
def datamodule(phantom_root):
    dm = CareDataModule(phantom_sources(phantom_root), preprocessing=PREP, patch_size=[48, 48], batch_size=6,
                        samples_per_epoch=24)
    dm.setup("fit")
    return dm


def test_training_batch_contract(datamodule):
    torch.manual_seed(0)
    batch = next(iter(datamodule.train_dataloader()))
    B, P = 6, max(len(p) for p in batch["prompts"])
    assert batch["image"].shape == (B, 1, 48, 48)
    assert batch["target"].shape == (B, P, 48, 48)
    assert batch["prompt_mask"].shape == (B, P) and batch["prompt_mask"].dtype == torch.bool
    assert len(batch["prompts"]) == B and all(len(row) == P for row in batch["prompts"])
    for i in range(B):
        real = [p is not None for p in batch["prompts"][i]]
        # padding prompts are never annotated and have empty targets
        assert not batch["prompt_mask"][i][~torch.tensor(real)].any()
        assert batch["target"][i][~torch.tensor(real)].sum() == 0
        assert set(batch["target"][i].unique().tolist()) <= {0.0, 1.0}
    for key in ("task", "center", "modality", "case_id"):
        assert len(batch[key]) == B
    assert {len(s) for s in batch["structures"]} <= {1, 4, 7}  # MyoPS: LV, myo, scar and the trained RV


def test_foreground_sampling_finds_structures(datamodule):
    torch.manual_seed(1)
    loader = datamodule.train_dataloader()
    positive = [float(b["target"].sum()) > 0 for b in loader]
    assert sum(positive) == len(positive)  # with 70% foreground patches, every batch holds structure


def test_2d_slices_follow_each_case_slice_axis(datamodule):
    myops = [c for c in datamodule.cases("train") if c.case.task == "myops"]
    assert {c.slice_axis for c in myops} == {0, 1}  # LSP and PSR stacks land differently in RAS
    for case in myops:
        assert case.spacing[case.slice_axis] >= 10


def test_validation_volumes_carry_roles_and_original_reference(datamodule):
    items = list(datamodule.val_dataloader())
    assert {b["role"] for b in items} == {"ID", "OOD"}
    for item in items:
        assert item["image"].ndim == 5
        assert item["reference"].shape[1:] == tuple(item["original_shape"])
        assert item["reference"].shape[0] == len(item["structures"]) == len(item["prompts"][0])


def test_case_weights_uniform_over_tasks(datamodule):
    cases = [c.case for c in datamodule.cases("train")]
    weights = case_weights(cases, "uniform")
    by_task = {t: weights[[c.task == t for c in cases]].sum() for t in ("la", "whs", "myops")}
    np.testing.assert_allclose(list(by_task.values()), 1 / 3)
    proportional = case_weights(cases, "proportional")
    np.testing.assert_allclose(proportional, 1 / len(cases))
    weighted = case_weights(cases, "uniform", task_weights={"whs": 2.0})
    assert weighted[[c.task == "whs" for c in cases]].sum() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="task_weights"):
        case_weights(cases, "uniform", task_weights={"whs": 0.0})
    with pytest.raises(ValueError, match="task_sampling"):
        case_weights(cases, "bogus")


def test_source_weight_sets_its_group_share_and_its_cases_share():
    import dataclasses

    from datamodules.case import Case

    def case(i, modality, weight):
        return Case(f"c{i}", "myops", "m", modality, "myops", f"{i}.nii.gz", None, "train", weight)

    # one LA case; MyoPS: three LGE cases (one at weight 2), two C0 cases at weight 0.5
    cases = [Case("a", "la", "l", "LGE", "lascarqs", "a.nii.gz", None, "train"),
             case(0, "LGE", 1.0), case(1, "LGE", 1.0), case(2, "LGE", 2.0), case(3, "C0", 0.5), case(4, "C0", 0.5)]
    weights = case_weights(cases, "uniform")
    assert weights[0] == pytest.approx(1 / 2)
    lge, c0 = 1 + 1 + 2, 0.5 + 0.5  # group masses: mean weight 4/3 and 1/2 -> shares 8/11 and 3/11
    assert weights[1:4].sum() == pytest.approx(1 / 2 * (lge / 3) / (lge / 3 + c0 / 2))
    assert weights[4:].sum() == pytest.approx(1 / 2 * 3 / 11)
    assert weights[3] == pytest.approx(2 * weights[1])  # inside the group by weight
    assert weights[4] == pytest.approx(weights[5])
    unweighted = case_weights([dataclasses.replace(c, weight=1.0) for c in cases], "uniform")
    assert unweighted[4:].sum() == pytest.approx(1 / 4)  # without weights the two groups halve the task


def test_sampler_draws_anew_each_epoch_and_repeats_for_a_seed():
    weights = np.full(10, 0.1)
    a, b = WeightedCaseSampler(weights, 20, seed=3), WeightedCaseSampler(weights, 20, seed=3)
    first = list(a)
    assert first == list(a) == list(b)  # the draw is a function of (seed, epoch) only
    a.set_epoch(1)
    assert list(a) != first
    assert len({draw.seed for draw in first}) == 20  # every patch has its own seed
    b.seed = 4
    b.set_epoch(0)
    shifted = WeightedCaseSampler(weights, 20, seed=3)
    shifted.set_epoch(1)
    assert list(b) != list(shifted)  # seed 4 is not seed 3 one epoch later


def test_a_patch_is_a_function_of_its_draw(datamodule):
    dataset = datamodule.train_dataloader().dataset
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = dataset[PatchDraw(0, 123)]
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left as it was
    torch.manual_seed(99)
    again, other = dataset[PatchDraw(0, 123)], dataset[PatchDraw(0, 124)]
    assert torch.equal(first["image"], again["image"]) and first["prompts"] == again["prompts"]
    assert not torch.equal(first["image"], other["image"])


def test_loader_resumes_mid_epoch_with_the_remaining_batches(datamodule):
    def fingerprints(loader, epoch):
        loader.batch_sampler.sampler.set_epoch(epoch)
        return [(tuple(b["case_id"]), float(b["image"].sum())) for b in loader]

    loader = datamodule.train_dataloader()
    assert loader.state_dict() == {}
    whole = fingerprints(loader, 2)
    assert loader.state_dict() == {"epoch": 2, "batches_served": 4}
    partial = iter(loader)
    next(partial), next(partial)
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches_served": 2}

    resumed = datamodule.train_dataloader()  # a new process: a new loader, then Lightning's calls
    resumed.load_state_dict(state)
    assert fingerprints(resumed, 2) == whole[2:]
    assert resumed.state_dict() == {"epoch": 2, "batches_served": 4}
    assert len(fingerprints(resumed, 3)) == 4  # the next epoch is whole again

    other_epoch = datamodule.train_dataloader()
    other_epoch.load_state_dict(state)
    assert fingerprints(other_epoch, 3) == fingerprints(datamodule.train_dataloader(), 3)


def test_bad_datamodule_arguments_raise(phantom_root):
    with pytest.raises(ValueError, match="patch_size"):
        CareDataModule(phantom_sources(phantom_root), patch_size=[64])
    with pytest.raises(ValueError, match="sources is empty"):
        CareDataModule([])
    with pytest.raises(ValueError, match="foreground_fraction"):  # at construction, before any preprocessing
        CareDataModule(phantom_sources(phantom_root), foreground_fraction=1.5)
    with pytest.raises(ValueError, match="probability"):
        Augmentation(probability=2.0)


def test_3d_patches_pad_thin_stacks(datamodule):
    from datamodules.patches import PatchDataset

    cases = datamodule.cases("train")
    dataset = PatchDataset(cases, [32, 32, 16], 0.7, None)
    for index in (0, len(cases) - 1):  # an LA volume and a 4-7 slice MyoPS stack
        sample = dataset[index]
        assert sample["image"].shape == (1, 32, 32, 16)
        assert sample["target"].shape == (len(sample["prompts"]), 32, 32, 16)


def test_ddp_ranks_draw_different_cases_that_together_make_the_epoch():
    # the wrapper Lightning puts around a custom sampler under DDP
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    weights = np.full(50, 1 / 50)
    draws = {}
    for rank in (0, 1):
        wrapped = DistributedSamplerWrapper(WeightedCaseSampler(weights, 40, seed=3), num_replicas=2, rank=rank,
                                            shuffle=False)
        wrapped.set_epoch(0)
        draws[rank] = list(wrapped)
    assert len(draws[0]) == len(draws[1]) == 20
    assert draws[0] != draws[1]
    whole = list(WeightedCaseSampler(weights, 40, seed=3))
    assert sorted(draws[0] + draws[1]) == sorted(whole)


def test_workers_make_the_same_patches_and_resume_the_same_way(datamodule, monkeypatch):
    def fingerprints(loader):
        loader.batch_sampler.sampler.set_epoch(1)
        return [(tuple(b["case_id"]), float(b["image"].sum()), tuple(map(tuple, b["prompts"]))) for b in loader]

    in_process = fingerprints(datamodule.train_dataloader())
    monkeypatch.setattr(datamodule, "num_workers", 2)
    assert fingerprints(datamodule.train_dataloader()) == in_process
    resumed = datamodule.train_dataloader()
    resumed.load_state_dict({"epoch": 1, "batches_served": 3})
    # with workers the batch sampler starts while the iterator is built, not at the first batch
    assert fingerprints(resumed) == in_process[3:]
