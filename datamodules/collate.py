"""Batching: patches of different tasks carry different prompt counts, padded to the largest."""

from __future__ import annotations

import torch

PATCH_METADATA = ("task", "center", "modality", "case_id", "structures")


def collate_patches(samples: list[dict]) -> dict:
    """Stack patches; pad prompts to the batch's largest count.

    Padded prompts have ``prompt_mask`` False, an all-zero target and prompt ``None`` (the
    network gives them no query), so they add nothing to the loss.
    """
    width = max(len(s["prompts"]) for s in samples)
    shape = samples[0]["target"].shape[1:]
    target = torch.zeros((len(samples), width, *shape))
    prompt_mask = torch.zeros((len(samples), width), dtype=torch.bool)
    prompts = []
    for i, sample in enumerate(samples):
        count = len(sample["prompts"])
        target[i, :count] = sample["target"]
        prompt_mask[i, :count] = sample["prompt_mask"]
        prompts.append(list(sample["prompts"]) + [None] * (width - count))
    batch = {"image": torch.stack([s["image"] for s in samples]), "target": target,
             "prompt_mask": prompt_mask, "prompts": prompts}
    for key in PATCH_METADATA:
        batch[key] = [s[key] for s in samples]
    return batch


def collate_volume(samples: list[dict]) -> dict:
    """Whole volumes are evaluated one at a time: add the batch axis to the image only."""
    if len(samples) != 1:
        raise ValueError(f"whole-volume loaders take batch_size=1, got {len(samples)} volumes")
    sample = dict(samples[0])
    sample["image"] = sample["image"][None]
    sample["prompts"] = [sample["prompts"]]
    return sample


def subset_patches(batch: dict, indices: list[int]) -> dict:
    """The samples ``indices`` of a ``collate_patches`` batch, as if collated alone (prompt
    padding cut to the subset's largest count)."""
    if not indices:
        raise ValueError("an empty subset of a batch")
    width = max(sum(p is not None for p in batch["prompts"][i]) for i in indices)
    index = torch.tensor(indices)
    subset = {"image": batch["image"][index], "target": batch["target"][index, :width],
              "prompt_mask": batch["prompt_mask"][index, :width],
              "prompts": [batch["prompts"][i][:width] for i in indices]}
    for key in PATCH_METADATA:
        subset[key] = [batch[key][i] for i in indices]
    return subset
