"""Cost of each training augmentation at a GPU-sized 3D patch: which transforms make 3D patches slow.

    python benchmarks/augmentation_cost.py [--patch 96] [--repeats 15]

Each transform of ``Augmentation().transform`` (the experiments' default settings) is applied
with probability 1 to a fresh image + label subject of ``patch``^3 voxels; the median seconds
per application after one warm-up are printed, then the mean of the whole composition as
configured (each transform with its probability). Then TorchIO's ``RandomAnisotropy`` (SimpleITK),
which ``RandomLowResolution`` replaced, on the same draws. Last, the in-plane affine (the
costliest) done by the other resamplers at hand, image (linear) and label (nearest) alike, to
show whether one is cheaper: TorchIO's (SimpleITK), torch's ``grid_sample`` and MONAI's
``Affine``. 2 threads, as the loader's process has here. Results are recorded in benchmarks/RESULTS.md ("Loader").
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
import torchio as tio
from monai.transforms import Affine

from datamodules.transforms.augmentation import Augmentation


def subject(image: torch.Tensor, label: torch.Tensor) -> tio.Subject:
    return tio.Subject(image=tio.ScalarImage(tensor=image.clone()), label=tio.LabelMap(tensor=label.clone()))


def seconds(transform, image: torch.Tensor, label: torch.Tensor, repeats: int) -> list[float]:
    times = []
    for index in range(repeats + 1):
        patch = subject(image, label)
        start = time.perf_counter()
        transform(patch)
        if index:  # the first call pays for one-time set-up
            times.append(time.perf_counter() - start)
    return times


def affine_alternatives(image: torch.Tensor, label: torch.Tensor, repeats: int,
                        degrees: float = 10.0, scale: float = 1.05) -> dict[str, float]:
    """Median seconds of one in-plane rotation by ``degrees`` and scaling by ``scale`` of image
    and label, per resampler."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, -sin, 0.0, 0.0], [sin, cos, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])

    def by_torch(patch):
        grid = F.affine_grid(theta, (1, *image.shape), align_corners=False)
        F.grid_sample(patch["image"].data[None], grid, mode="bilinear", align_corners=False)
        F.grid_sample(patch["label"].data[None].float(), grid, mode="nearest", align_corners=False)

    monai_affine = Affine(rotate_params=(0.0, 0.0, angle), scale_params=(scale, scale, 1.0), padding_mode="zeros",
                          image_only=True)

    def by_monai(patch):
        monai_affine(patch["image"].data, mode="bilinear")
        monai_affine(patch["label"].data.float(), mode="nearest")

    torchio = tio.Affine(scales=(scale, scale, 1.0), degrees=(0.0, 0.0, degrees), translation=(0, 0, 0))
    return {name: statistics.median(seconds(run, image, label, repeats))
            for name, run in (("TorchIO (SimpleITK)", torchio), ("torch grid_sample", by_torch), ("MONAI Affine", by_monai))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    torch.manual_seed(0)
    shape = (1, args.patch, args.patch, args.patch)
    image, label = torch.randn(shape), (torch.rand(shape) > 0.9).to(torch.int32)
    augmentation = Augmentation()
    for transform in augmentation.transform(slice_axis=2).transforms:
        transform.probability = 1.0
        median = statistics.median(seconds(transform, image, label, args.repeats))
        print(f"{type(transform).__name__}: {median * 1000:.0f} ms per {args.patch}^3 patch", flush=True)
    configured = seconds(augmentation.transform(slice_axis=2), image, label, 3 * args.repeats)
    print(f"all, as configured (each p={augmentation.probability}): mean {statistics.mean(configured) * 1000:.0f} ms "
          f"per {args.patch}^3 patch")
    replaced = tio.RandomAnisotropy(axes=(0, 1), downsampling=(1.0, augmentation.max_downsampling))
    median = statistics.median(seconds(replaced, image, label, args.repeats))
    print(f"TorchIO RandomAnisotropy (replaced by RandomLowResolution): {median * 1000:.0f} ms per {args.patch}^3 patch")
    for name, median in affine_alternatives(image, label, args.repeats).items():
        print(f"in-plane affine by {name}: {median * 1000:.0f} ms per {args.patch}^3 patch", flush=True)


if __name__ == "__main__":
    main()
