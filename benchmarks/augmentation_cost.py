"""Cost of each training augmentation at a GPU-sized 3D patch: which transforms make 3D patches slow.

    python benchmarks/augmentation_cost.py [--patch 96] [--repeats 15]

Each transform of ``Augmentation().transform`` (the experiments' default settings) is applied
with probability 1 to a fresh image + label subject of ``patch``^3 voxels; the median seconds
per application after one warm-up are printed, then the mean of the whole composition as
configured (each transform with its probability). 2 threads, as the loader's process has here.
Results are recorded in benchmarks/RESULTS.md ("Loader").
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchio as tio

from datamodules.augmentation import Augmentation


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


if __name__ == "__main__":
    main()
