"""Prompt-to-target alignment by value: in a training batch, the target channel of each prompt is
that structure's mask in the patch, whatever the phrasing, for every layout; a structure the
layout does not annotate is masked out, never a negative."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import vocabulary
from datamodules.case import Case
from datamodules.collate import collate_patches
from datamodules.patches import PatchDataset
from datamodules.preprocessing import PreprocessedCase
from lightning_modules.training.losses import PartialLabelLoss

# the published label codes, written here rather than read from the vocabulary, so a wrong
# table there cannot agree with itself
CODES = {
    "myops": {"lv": {500}, "myo": {200, 1220, 2221}, "scar": {2221}, "rv": {600}},
    "mmwhs": {"myo": {205}, "la": {420}, "lv": {500}, "ra": {550}, "rv": {600}, "aorta": {820}, "pa": {850}},
    "lascarqs": {"la": {255}},
}


def labelled_volume(layout: str, in_plane: int) -> np.ndarray:
    """Blocks of every code of the layout on a few slices; MyoPS's scar and edema lie inside its
    myocardium ring around the LV, as in the files."""
    label = np.zeros((in_plane, in_plane, 6), np.int32)
    if layout == "myops":
        label[2:10, 2:10, 1:5] = 200
        label[4:8, 4:8, 1:5] = 500
        label[2:4, 5:7, 2:4] = 2221
        label[8:10, 2:4, 1:3] = 1220
        label[-3:, -3:, 2:4] = 600  # RV: labelled, not a MyoPS target
    else:
        codes = sorted({code for codes in CODES[layout].values() for code in codes})
        for k, code in enumerate(codes):
            label[k:k + 3, (2 * k) % (in_plane - 3):(2 * k) % (in_plane - 3) + 3, 1:5] = code
    return label


def case_of(task: str, layout: str, in_plane: int, name: str) -> PreprocessedCase:
    label = labelled_volume(layout, in_plane)
    record = Case(name, task, "c", vocabulary.TASKS[task].default_modality, layout, f"{name}.nii.gz", f"{name}_gt.nii.gz", "train")
    # the image is the label itself: with augmentation off, each patch carries its own codes
    return PreprocessedCase(record, "ID", torch.from_numpy(label[None].astype(np.float32)), torch.from_numpy(label),
                            np.eye(4), 2, label.shape, np.eye(4))


def structure_named(prompt: str) -> str:
    """The structure a prompt names, from the phrasings alone, whatever the sentence frame: the
    structure of the longest name it contains (a prompt naming two structures fails)."""
    found = sorted(((len(name), key) for key, structure in vocabulary.STRUCTURES.items()
                    for name in structure.names if name in prompt), reverse=True)
    assert found, prompt
    longest = [key for length, key in found if length == found[0][0]]
    assert len(set(longest)) == 1, (prompt, found)
    return longest[0]


def test_each_prompt_target_is_its_structure_mask_whatever_the_phrasing():
    # 12x12 slices are padded up to the 16x16 patch; 20x20 ones are cut
    cases = [case_of(task, layout, in_plane, f"{task}-{in_plane}")
             for task, layout in (("la", "lascarqs"), ("whs", "mmwhs"), ("myops", "myops")) for in_plane in (12, 20)]
    dataset = PatchDataset(cases, [16, 16], foreground_fraction=0.9, augmentation=None, synonym_probability=1.0)
    phrasings: dict[str, set[str]] = {}
    for start in range(0, 60, 6):
        batch = collate_patches([dataset[(index, start + index)] for index in range(len(cases))])
        for sample, task in enumerate(batch["task"]):
            codes = batch["image"][sample, 0].round().long().numpy()
            prompts = [prompt for prompt in batch["prompts"][sample] if prompt is not None]  # None: padding
            layout = cases[sample].case.layout
            assert len(prompts) == len(vocabulary.TASKS[task].trained_structures)
            for channel, prompt in enumerate(prompts):
                structure = structure_named(prompt)
                phrasings.setdefault(structure, set()).add(prompt)
                expected = np.isin(codes, sorted(CODES[layout][structure])) if layout != "lascarqs" else codes != 0
                assert bool(batch["prompt_mask"][sample, channel])
                assert np.array_equal(batch["target"][sample, channel].numpy() == 1, expected), (task, prompt)
            # the padding prompts of a shorter task are masked and empty
            assert not batch["prompt_mask"][sample, len(prompts):].any()
            assert not batch["target"][sample, len(prompts):].any()
    assert all(len(p) > 1 for p in phrasings.values())  # several phrasings of every structure were drawn
    assert {"scar", "myo", "lv", "la", "aorta"} <= set(phrasings)


def test_varied_wordings_keep_each_target_with_its_prompt():
    # with every prompt in a random sentence frame and modality wording, each target channel is
    # still its prompt's structure, in the task's table order
    cases = [case_of("myops", "myops", 20, "myops-20"), case_of("whs", "mmwhs", 20, "whs-20")]
    dataset = PatchDataset(cases, [16, 16], foreground_fraction=0.9, augmentation=None, synonym_probability=1.0,
                           wording_probability=1.0)
    frames: set[str] = set()
    for start in range(40):
        batch = collate_patches([dataset[(index, start)] for index in range(len(cases))])
        for sample, task in enumerate(batch["task"]):
            prompts = [prompt for prompt in batch["prompts"][sample] if prompt is not None]
            structures = [structure_named(prompt) for prompt in prompts]
            assert structures == batch["structures"][sample] == list(vocabulary.TASKS[task].trained_structures)
            codes = batch["image"][sample, 0].round().long().numpy()
            layout = cases[sample].case.layout
            for channel, structure in enumerate(structures):
                if not batch["prompt_mask"][sample, channel]:
                    continue
                expected = np.isin(codes, sorted(CODES[layout][structure]))
                assert np.array_equal(batch["target"][sample, channel].numpy() == 1, expected), (task, structure)
            frames.update(prompt.split(" ")[0] for prompt in prompts)
    assert len(frames) > 3  # sentence frames vary


def test_a_structure_the_layout_does_not_annotate_is_masked_and_gets_no_gradient():
    # whole-heart prompts on a MyoPS label: only LV, RV and myocardium are annotated there
    case = case_of("whs", "myops", 20, "whs-on-myops")
    sample = PatchDataset([case], [16, 16], foreground_fraction=1.0, augmentation=None)[(0, 3)]
    structures = list(vocabulary.TASKS["whs"].structures)
    annotated = {"lv", "rv", "myo"}
    assert sample["prompt_mask"].tolist() == [s in annotated for s in structures]
    for channel, structure in enumerate(structures):
        if structure not in annotated:
            assert not sample["target"][channel].any()
    batch = collate_patches([sample])
    logits = torch.randn(batch["target"].shape, requires_grad=True)
    groups = [[f"whs/{s}" for s in structures]]
    PartialLabelLoss()(logits, batch["target"], batch["prompt_mask"], groups).backward()
    for channel, structure in enumerate(structures):
        moved = bool(logits.grad[0, channel].abs().sum() > 0)
        assert moved == (structure in annotated), structure  # no push towards "absent" for the rest


def test_patch_centres_follow_foreground_fraction_over_every_trained_structure():
    # the sampler's rule, counted over many draws: the background gets 1 - fraction of the
    # centres, each trained structure an equal share of the rest, whatever its size; the RV,
    # labelled in MyoPS files and trained though no MyoPS target (Task.also_trained), is one of them
    case = case_of("myops", "myops", 20, "myops-20")
    dataset = PatchDataset([case], [4, 4], foreground_fraction=0.6, augmentation=None)  # every structure has centres where it fits
    box = dataset.box(case)
    structure_map = dataset.subject(0)["structures"].data[0]
    label = dataset.subject(0)["label"].data[0]
    torch.manual_seed(0)
    draws = 3000
    counts = torch.zeros(5)
    for _ in range(draws):
        corner = dataset._corner(0, box)
        centre = tuple(c + p // 2 for c, p in zip(corner, box))
        counts[int(structure_map[centre])] += 1
        if int(structure_map[centre]) == 0:
            assert int(label[centre]) not in (500, 200, 1220, 2221, 600)
    shares = counts / draws
    assert abs(shares[0] - 0.4) < 0.03
    for value in (1, 2, 3, 4):  # lv, myo, scar, rv: 0.15 each, scar being a few voxels and the myocardium many
        assert abs(shares[value] - 0.15) < 0.03, shares
    # a patch is the crop at its corner, image and label alike
    sample = dataset[(0, 11)]
    assert sample["image"].shape[-2:] == (4, 4)


def test_a_structure_its_source_leaves_out_is_masked_and_never_a_patch_centre():
    # MyoPS C0 trained without scar (DataSource.structures): scar is asked but masked, as an
    # unannotated structure, and the myocardium keeps the scar's voxels (its label includes them)
    full = case_of("myops", "myops", 20, "myops-c0")
    case = dataclasses.replace(full, case=dataclasses.replace(full.case, modality="C0", structures=("lv", "myo", "rv")))
    dataset = PatchDataset([case], [4, 4], foreground_fraction=1.0, augmentation=None)
    sample = dataset[(0, 5)]
    structures = list(vocabulary.TASKS["myops"].trained_structures)
    assert sample["prompt_mask"].tolist() == [s != "scar" for s in structures]
    assert not sample["target"][structures.index("scar")].any()
    structure_map = dataset.subject(0)["structures"].data[0]
    label = dataset.subject(0)["label"].data[0]
    assert int(structure_map.max()) == 3  # lv, myo, rv: no index of its own for scar
    assert bool((structure_map[label == 2221] == 2).all())  # scar voxels count as myocardium
    batch = collate_patches([sample])
    logits = torch.randn(batch["target"].shape, requires_grad=True)
    PartialLabelLoss()(logits, batch["target"], batch["prompt_mask"], [[f"myops/{s}" for s in structures]]).backward()
    assert not logits.grad[0, structures.index("scar")].any()
    assert logits.grad[0, structures.index("myo")].abs().sum() > 0


def test_source_structures_outside_the_task_are_refused_naming_the_source(phantom_root):
    from datamodules.case import DataSource
    from datamodules.readers import read_source

    root = str(phantom_root / "myops" / "myops_c1" / "train")
    cases = read_source(DataSource("myops", root, "myops", "myops_c1", "LGE", structures=["lv", "myo", "rv"]))
    assert cases and all(case.structures == ("lv", "myo", "rv") for case in cases)
    with pytest.raises(ValueError, match=r"myops_c1/train.*\['lv', 'la'\].*subset of task 'myops'"):
        read_source(DataSource("myops", root, "myops", "myops_c1", "LGE", structures=["lv", "la"]))
    with pytest.raises(ValueError, match=r"myops_c1/train.*weight must be positive, got 0"):
        read_source(DataSource("myops", root, "myops", "myops_c1", "LGE", weight=0.0))
