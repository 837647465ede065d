"""One GPU check of the real experiment (``experiments/care_unified.yaml``): run once when a GPU is
lent, record its output in benchmarks/RESULTS.md, and size the experiment from it.

    python benchmarks/gpu_check.py            # needs a CUDA GPU; under 10 minutes on one
    python benchmarks/gpu_check.py --tiny     # the same code path on CPU at toy sizes (a test runs it)

It measures, on generated phantoms in the experiment's layouts (care_unified.yaml's centers):

- the train step (forward, loss, backward, AdamW) of the experiment's model at its patch (96^3)
  and batch (2) in bf16 autocast: with 1 prompt (an LA batch), with 7 (a whole-heart batch), and
  the plain backbone alone; time per step and peak GPU memory;
- loader patches/s with 4 and 8 workers, against the patches/s the step consumes;
- whole-volume inference of a 512x512x200 CT-sized volume with the 7 WHS prompts, bf16, no TTA
  (goal on an H100-class GPU: <= 2 s);
- whether the training step fits a 40 GB GPU at the configured batch.

The last line is one summary: ``gpu=<name> step_s_7_vs_1=<r> conditioning_vs_backbone=<r>
loader_vs_step_4w=<r> loader_vs_step_8w=<r> inference_s=<s> fits_40gb=<yes|no>``.
Without CUDA (and without ``--tiny``) it refuses, exit code 2.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling timing module, when run as a script
from timing import step_times  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GIB = 2 ** 30
# peak memory is in GiB: a "40 GB" GPU has about 39.6 GiB, less the CUDA context and the
# allocator's fragmentation, so 40e9 bytes (37.25 GiB) is the bound, not 40 GiB
FORTY_GB_IN_GIB = 40e9 / GIB


def experiment(root: Path, device: str, tiny: bool, workers: int):
    """The care_unified experiment on the phantoms at ``root``, on one device, without loggers."""
    from lightning_modules.command_line.experiment import build_experiment

    args = ["--config", str(REPO / "experiments" / "care_unified.yaml"), "--trainer.logger", "false",
            "--trainer.devices", "1", "--trainer.strategy", "auto",
            "--trainer.accelerator", "cpu" if device == "cpu" else "gpu",
            "--data.num_workers", str(workers), "--data.cache_dir", str(root / "cache")]
    if tiny:
        args += ["--model.net.init_args.backbone.init_args.base_filters", "4",
                 "--model.net.init_args.backbone.init_args.max_filters", "16",
                 "--data.patch_size", "[64, 64, 32]"]
    return build_experiment(args)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn()`` after one warm-up call, and peak GPU memory in GiB (0 on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = step_times(fn, device, warmup=1, steps=repeats)
    peak = torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else 0.0
    return statistics.median(times), peak


def batch_of(loader_iter, task: str, batch_size: int) -> dict:
    """A training batch whose samples are all of one task (drawn until there are enough)."""
    from datamodules.collate import subset_patches

    chosen = None
    while chosen is None:
        batch = next(loader_iter)
        index = [i for i, t in enumerate(batch["task"]) if t == task]
        if len(index) == len(batch["task"]) == batch_size:
            chosen = subset_patches(batch, index)
    return chosen


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes on CPU: checks the code path, measures nothing")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    parser.add_argument("--phantoms", type=Path, default=None,
                        help="an existing phantom folder (`care-cardiac phantoms` output) instead of writing one")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.tiny:
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); this check needs one. "
              "`--tiny` runs its code path on CPU at toy sizes.", file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    repeats = args.repeats or (2 if args.tiny else 10)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (--tiny)"
    print(f"gpu_check {datetime.datetime.now().isoformat(timespec='seconds')} on {name}", flush=True)
    from datamodules.phantoms import write_phantoms

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        phantoms = args.phantoms or write_phantoms(root / "phantoms", seed=0, cases_per_center=2, eval_cases=1)
        for task in ("la", "whs", "myops"):
            os.environ[f"CARE_{task.upper()}_ROOT"] = str(phantoms / task)
        cli = experiment(root, device.type, args.tiny, workers=0)
        datamodule, module = cli.datamodule, cli.model.to(device)
        datamodule.setup("fit")
        batch_size = datamodule.batch_size
        loader = iter(datamodule.train_dataloader())
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16)

        def train_step(batch):
            def step():
                with autocast:
                    loss = module._training_loss(batch)[0]
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            return step

        one = to_device(batch_of(loader, "la", batch_size), device)
        seven = to_device(batch_of(loader, "whs", batch_size), device)
        step_1, peak_1 = timed(train_step(one), device, repeats)
        step_7, peak_7 = timed(train_step(seven), device, repeats)

        def backbone_step():
            with autocast:
                loss = module.net.backbone(seven["image"]).float().mean()
            loss.backward()
            optimizer.zero_grad(set_to_none=True)

        step_backbone, peak_backbone = timed(backbone_step, device, repeats)
        for label, seconds, peak in (("1 prompt (LA batch)", step_1, peak_1), ("7 prompts (WHS batch)", step_7, peak_7),
                                     ("plain backbone", step_backbone, peak_backbone)):
            print(f"train step, patch {datamodule.patch_size}, batch {batch_size}, bf16, {label}: "
                  f"{seconds:.3f} s, peak {peak:.2f} GiB", flush=True)
        consumed = batch_size / step_7  # patches/s one GPU trains on

        loader_rates = {}
        for workers in (4, 8):
            datamodule.num_workers = workers
            # timed from the start, worker start-up included: timing after a first batch would
            # count the batches every worker prefetched meanwhile as free (a rate too high)
            count = 2 if args.tiny else 100
            start = time.perf_counter()
            batches = iter(datamodule.train_dataloader())
            for _ in range(count):
                next(batches)
            loader_rates[workers] = count * batch_size / (time.perf_counter() - start)
            del batches
            print(f"loader, {workers} workers: {loader_rates[workers]:.1f} patches/s "
                  f"(the step consumes {consumed:.1f})", flush=True)

        import vocabulary

        shape = (64, 64, 40) if args.tiny else (512, 512, 200)
        volume = torch.randn(1, 1, *shape, device=device)
        prompts = [[vocabulary.prompt(s, "CT") for s in vocabulary.TASKS["whs"].structures]]
        module.eval()

        def infer():
            with torch.no_grad(), autocast:
                module.predictor.logits(volume, 2, prompts)

        inference_s, inference_peak = timed(infer, device, 1 if args.tiny else 3)
        print(f"inference, volume {'x'.join(map(str, shape))}, 7 prompts, bf16, no TTA: {inference_s:.2f} s, "
              f"peak {inference_peak:.2f} GiB", flush=True)
        fits = "yes" if max(peak_1, peak_7) < FORTY_GB_IN_GIB else "no"
        print(f"gpu={name.replace(' ', '_')} step_s_7_vs_1={step_7 / step_1:.3f} "
              f"conditioning_vs_backbone={step_7 / step_backbone:.3f} loader_vs_step_4w={loader_rates[4] / consumed:.3f} "
              f"loader_vs_step_8w={loader_rates[8] / consumed:.3f} inference_s={inference_s:.2f} fits_40gb={fits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
