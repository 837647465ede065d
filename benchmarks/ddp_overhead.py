"""DDP overhead on CPU: training steps of the demo model (``experiments/phantoms.yaml``: 2D, 16
patches of 64x64 per process, the plain U-Net encoder) in 1 process vs 2 processes (gloo,
``ddp_spawn``), each process on one thread.

    python benchmarks/ddp_overhead.py [--steps 20] [--phantoms data/phantoms]

Time per step is measured on rank 0 between step 5 and the last step (start-up, data set-up and
warm-up excluded). With one thread per process, the ratio of step times is the cost of DDP itself
(gradient all-reduce, wrapper), and patches/s shows what the second process adds on this machine.
Results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import timedelta
from pathlib import Path

from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]


class StepClock(Callback):
    """Seconds per step on rank 0 from step 5 to the end, written to ddp_overhead.json (module level: spawn pickles it)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 5:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            seconds = (time.perf_counter() - self.start) / (trainer.global_step - 5)
            Path("ddp_overhead.json").write_text(json.dumps({"step_s": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--phantoms", default=os.environ.get("CARE_PHANTOMS", str(REPO / "data" / "phantoms")))
    args = parser.parse_args()
    os.environ["CARE_PHANTOMS"] = args.phantoms
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned ranks: one thread per process
    import lightning as L
    import torch
    from lightning.pytorch.strategies import DDPStrategy

    from lightning_modules.command_line.experiment import build_experiment

    results = {}
    for devices in (1, 2):
        torch.set_num_threads(1)
        cli = build_experiment(["--config", str(REPO / "experiments" / "phantoms.yaml"), "--trainer.logger", "false",
                                "--data.samples_per_epoch", str(16 * devices * (args.steps + 1))])
        strategy = ("auto" if devices == 1 else
                    DDPStrategy(start_method="spawn", process_group_backend="gloo", timeout=timedelta(seconds=600)))
        trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, max_steps=args.steps,
                            limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[StepClock()])
        trainer.fit(cli.model, datamodule=cli.datamodule)
        step = json.loads(Path("ddp_overhead.json").read_text())["step_s"]
        results[devices] = step
        print(f"{devices} process(es), 1 thread each: {step:.3f} s/step, {16 * devices / step:.1f} patches/s", flush=True)
    Path("ddp_overhead.json").unlink(missing_ok=True)
    print(f"ddp_step_time_ratio={results[2] / results[1]:.3f} "
          f"throughput_ratio={(32 / results[2]) / (16 / results[1]):.3f}")


if __name__ == "__main__":
    main()
