import numpy as np
import pytest
import torch

from datamodules.augmentation import Augmentation
from datamodules.datamodule import CareDataModule
from datamodules.preprocessing import Preprocessing
from datamodules.sampling import WeightedCaseSampler, case_weights
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
    assert {len(s) for s in batch["structures"]} <= {1, 3, 7}


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


def test_sampler_draws_anew_each_epoch_and_repeats_for_a_seed():
    weights = np.full(10, 0.1)
    a, b = WeightedCaseSampler(weights, 20, seed=3), WeightedCaseSampler(weights, 20, seed=3)
    first, second = list(a), list(a)
    assert first != second and first == list(b)


def test_bad_datamodule_arguments_raise(phantom_root):
    with pytest.raises(ValueError, match="patch_size"):
        CareDataModule(phantom_sources(phantom_root), patch_size=[64])
    with pytest.raises(ValueError, match="sources is empty"):
        CareDataModule([])
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
