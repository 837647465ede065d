"""Whole-volume inference cost: seconds per volume for a CT-sized (512x512x200) and an LGE
stack-sized (480x480x15, oblique, 12 mm slices) image, 1 prompt vs all the task's prompts, with
and without mirroring TTA, through the same path as ``care-cardiac predict``.

    python benchmarks/inference_speed.py [--config experiments/phantoms.yaml] [--ckpt CKPT]
                                         [--device cpu|cuda] [--bf16] [--quick]

Phases per volume: ``preprocess`` (read, reorient, resample to the task's spacing, normalise),
``network`` (MONAI sliding-window/slice inference, all TTA passes), ``export`` (probabilities
back onto the file's grid, threshold, post-processing, label map in the task's codes, atomic
NIfTI write). TTA mirrors the in-plane axes (4 passes; a 2D model gains nothing from mirroring
the slice axis). Each configuration runs in its own process, so its peak memory (CPU: max RSS;
CUDA: max allocated) is its own. Without ``--ckpt`` the experiment's untrained weights are used,
which predict noise: post-processing then costs more than with a trained model. Results are
recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from child_process import (  # benchmarks/ is on sys.path when run as a script
    add_child_argument,
    answer_child,
    run_child,
)

REPO = Path(__file__).resolve().parents[1]
VOLUMES = {
    # name: shape, spacing (mm), orientation, task, modality
    "CT 512x512x200": ((512, 512, 200), (0.4, 0.4, 0.8), "RAS", "whs", "CT"),
    "LGE stack 480x480x15": ((480, 480, 15), (0.73, 0.73, 12.0), "oblique", "myops", "LGE"),
}


def write_volume(name: str, folder: Path) -> Path:
    """A noisy image with a bright ellipsoid, on the named grid (oblique: rotated short-axis stack)."""
    import nibabel as nib
    import numpy as np

    shape, spacing, orientation, _, modality = VOLUMES[name]
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[(np.arange(n) - n / 2) * s for n, s in zip(shape, spacing)], indexing="ij"))
    inside = ((grid / np.array([40.0, 35.0, 45.0]).reshape(3, 1, 1, 1)) ** 2).sum(0) < 1
    base = 300.0 if modality == "CT" else 200.0
    data = (rng.normal(0, 30, shape) + base * inside).astype(np.int16)
    affine = np.diag([*spacing, 1.0])
    if orientation == "oblique":
        rotation = np.array([[0.0, -1.0, 0.0], [0.6, 0.0, -0.8], [0.8, 0.0, 0.6]])
        affine[:3, :3] = rotation @ np.diag(spacing)
    image = nib.Nifti1Image(data, None)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=0 if orientation == "oblique" else 1)
    path = folder / f"{name.split()[0].lower()}_{'x'.join(map(str, shape))}.nii.gz"
    nib.save(image, path)
    return path


def measure(config: dict) -> dict:
    import torch

    import vocabulary
    from datamodules.case import Case
    from datamodules.collate import collate_volume
    from datamodules.prediction import PredictionDataset
    from lightning_modules.command_line.experiment import build_experiment
    from lightning_modules.inference.prediction_writer import LabelMapWriter

    torch.manual_seed(0)
    device = torch.device(config["device"])
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    cli = build_experiment(["--config", config["experiment"], "--trainer.logger", "false"])
    model = cli.model
    if config["ckpt"]:
        state = torch.load(config["ckpt"], map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
    model.to(device).eval()
    _, _, _, task, modality = VOLUMES[config["volume"]]
    structures = list(vocabulary.TASKS[task].structures)[: config["prompts"]]
    case = Case(case_id="bench", task=task, center="bench", modality=modality, layout=vocabulary.TASKS[task].layout,
                image=config["image"], label=None, split="test")
    dataset = PredictionDataset([case], cli.datamodule.preprocessing, structures=structures)
    timings = {}
    start = time.perf_counter()
    batch = collate_volume([dataset[0]])
    timings["preprocess"] = time.perf_counter() - start
    if config["tta"]:
        model.tta_axes = [axis for axis in range(3) if axis != batch["slice_axis"]]
    batch["image"] = batch["image"].to(device)
    writer = LabelMapWriter({batch["uid"]: Path(config["out"]) / "bench_label.nii.gz"})
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=config["bf16"]):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        logits_grid = None
        predictor = model.predictor
        original = predictor.logits

        def timed_window(*args, **kwargs):  # split network time from the resampling and post-processing
            nonlocal logits_grid
            begin = time.perf_counter()
            result = original(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            logits_grid = (logits_grid or 0.0) + time.perf_counter() - begin
            return result.cpu()

        predictor.logits = timed_window
        predicted = predictor.predict(batch)[0]
        prediction = {"uid": batch["uid"], "task": task, "structures": structures, "masks": predicted.masks,
                      "label": predicted.label, "probabilities": predicted.probabilities,
                      "image_path": batch["image_path"]}
        writer.write_on_batch_end(None, model, prediction, None, batch, 0)
        total = time.perf_counter() - start
    timings["network"] = logits_grid
    timings["export"] = total - logits_grid
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {**{k: v for k, v in config.items() if k in ("volume", "prompts", "tta")}, **timings,
            "total_s": timings["preprocess"] + total, "grid": list(batch["image"].shape[2:]), "peak_mib": peak}


def run(config: dict) -> dict:
    """``measure(config)`` in a fresh process (own peak memory)."""
    return run_child(__file__, config, cwd=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "experiments" / "phantoms.yaml"))
    parser.add_argument("--ckpt", default=None, help="trained checkpoint of that experiment (recommended)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--quick", action="store_true", help="the LGE stack only, without TTA")
    add_child_argument(parser)
    args = parser.parse_args()
    if answer_child(args.child, measure):
        return
    import vocabulary

    with tempfile.TemporaryDirectory() as folder:
        names = ["LGE stack 480x480x15"] if args.quick else list(VOLUMES)
        print("| volume | prompts | TTA | preprocess s | network s | export s | total s | model grid | peak MiB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name in names:
            image = write_volume(name, Path(folder))
            task = VOLUMES[name][3]
            for prompts in (1, len(vocabulary.TASKS[task].structures)):
                for tta in ((False,) if args.quick else (False, True)):
                    out = Path(folder) / f"out-{prompts}-{tta}"
                    result = run({"volume": name, "image": str(image), "prompts": prompts, "tta": tta,
                                  "device": args.device, "bf16": args.bf16, "experiment": args.config,
                                  "ckpt": args.ckpt, "out": str(out)})
                    print(f"| {name} | {prompts} | {'4 passes' if tta else 'off'} | {result['preprocess']:.1f} | "
                          f"{result['network']:.1f} | {result['export']:.1f} | {result['total_s']:.1f} | "
                          f"{'x'.join(map(str, result['grid']))} | {result['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
