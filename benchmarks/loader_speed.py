"""Loader throughput: setup time with and without the preprocessing cache, and training
patches per second with and without augmentation, at the CPU config (2D 64x64) and at a
GPU-sized 3D patch (96^3).

    python benchmarks/loader_speed.py [--data DIR | --real SHARED_DATA] [--batches N] [--workers W]

``--data`` is a phantom folder (default: a fresh one in a temp folder, seed 0); ``--real`` reads
the real sample cases instead (``la_real`` and the LGE stacks of ``myops_real``, at 1.25 mm as in
``experiments/real_samples.yaml``). Prints one line per measurement, and last
``2d_augmented_patches_per_s=<x> 3d_augmented_patches_per_s=<y>``; results are recorded in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from datamodules.case import DataSource
from datamodules.datamodule import CareDataModule
from datamodules.manifest import Manifest
from datamodules.phantoms import write_phantoms
from datamodules.preprocessing import Preprocessing
from datamodules.transforms.augmentation import Augmentation

SPACING = {"la": 1.5, "whs": 2.0, "myops": 1.5}
REAL_SPACING = {"la": 1.25, "myops": 1.25}


def sources(root: Path) -> list[DataSource]:
    if (root / "myops_real").is_dir():
        return [DataSource("lascarqs", str(root / "la_real"), "la", "la_real", "LGE", "train"),
                DataSource("myops", str(root / "myops_real"), "myops", "myops_real", "LGE", "train")]
    description = json.loads((root / "phantoms.json").read_text())
    return [DataSource(layout=c["layout"], root=str(root / c["task"] / c["name"] / "train"), task=c["task"],
                       center=c["name"], modality=c["modality"], split="train")
            for c in description["centers"] if "train" in c["splits"]]


def datamodule(root: Path, patch: list[int], batch: int, augmentation, cache_dir, workers: int) -> CareDataModule:
    spacing = REAL_SPACING if (root / "myops_real").is_dir() else SPACING
    return CareDataModule(sources(root), Preprocessing(target_spacing=spacing), patch_size=patch, batch_size=batch,
                          samples_per_epoch=10**6, augmentation=augmentation, cache_dir=cache_dir,
                          num_workers=workers)


def timed_setup(root, cache_dir) -> float:
    start = time.perf_counter()
    datamodule(root, [64, 64], 16, None, cache_dir, 0).setup("fit")
    return time.perf_counter() - start


def patches_per_second(root: Path, patch: list[int], batch: int, augmentation, batches: int, workers: int) -> float:
    module = datamodule(root, patch, batch, augmentation, None, workers)
    module.setup("fit")
    loader = iter(module.train_dataloader())
    next(loader)  # first batch pays for building subjects and worker start-up
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="phantom folder (default: generate one)")
    parser.add_argument("--real", type=Path, default=None, help="folder holding la_real/ and myops_real/")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as scratch:
        root = args.real or args.data or write_phantoms(Path(scratch) / "phantoms", seed=0)
        cache = Path(scratch) / "cache"
        no_cache = timed_setup(root, None)
        cold = timed_setup(root, cache)
        warm = timed_setup(root, cache)
        cases = len(Manifest.from_sources(sources(root)).cases)
        print(f"{root}: setup (check + preprocess {cases} training cases): no cache {no_cache:.1f} s, "
              f"cold cache {cold:.1f} s, warm cache {warm:.1f} s")
        augmented = {}
        for patch, batch in (([64, 64], 16), ([96, 96, 96], 2)):
            for name, augmentation in (("augmented", Augmentation()), ("plain", None)):
                rate = patches_per_second(root, patch, batch, augmentation, args.batches, args.workers)
                print(f"patch {'x'.join(map(str, patch))} batch {batch} {name}: {rate:.1f} patches/s "
                      f"({args.workers} workers)", flush=True)
                if name == "augmented":
                    augmented[len(patch)] = rate
        print(f"2d_augmented_patches_per_s={augmented[2]:.1f} 3d_augmented_patches_per_s={augmented[3]:.1f}")


if __name__ == "__main__":
    main()
