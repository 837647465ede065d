"""A training run killed mid-epoch (SIGKILL) resumes from its last checkpoint and completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from tests.conftest import assert_same_state
from tests.test_cli import CONFIG, SMALL

STEPS, EVERY, KILL_AT = 24, 3, 7  # 4 steps per epoch, a checkpoint every 3 steps: they fall mid-epoch
# every setting the resume relies on is written: a list as long as the base experiment's is merged
# into it item by item (jsonargparse), so an unwritten `mode` would come from the base's best.ckpt
CHECKPOINTS = """
trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {filename: step, monitor: null, mode: min, every_n_train_steps: 3, save_top_k: 1, save_last: true}
"""
KILLED = CHECKPOINTS + f"""    - class_path: tests.test_resume.KillAtStep
      init_args: {{step: {KILL_AT}}}
"""


class KillAtStep(Callback):
    """SIGKILLs its own process at the end of optimizer step ``step``: a crash at a known point,
    mid-epoch, with no chance to save anything more (instead of a watcher racing the run's clock).

    Args:
        step: the optimizer step after which the process dies.
    """

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _fit(folder, *extra, callbacks: str = CHECKPOINTS) -> subprocess.Popen:
    (folder / "checkpoints.yaml").write_text(callbacks)
    command = [sys.executable, "-m", "lightning_modules.command_line.main", "fit", "--config", CONFIG, *SMALL,
               "--config", str(folder / "checkpoints.yaml"), "--data.samples_per_epoch", "8",
               "--trainer.max_steps", str(STEPS), "--trainer.max_epochs", "1000", "--trainer.limit_val_batches", "0",
               "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "results",
               "--trainer.logger.name", "resume", "--trainer.logger.version", "run", *extra]
    return subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(CONFIG).rsplit("/experiments", 1)[0]})


@pytest.mark.slow
def test_killed_run_resumes_to_completion(in_run_folder):
    last = in_run_folder / "results" / "resume" / "run" / "checkpoints" / "last.ckpt"
    killed = _fit(in_run_folder, callbacks=KILLED)
    _, errors = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, errors.decode()[-3000:]
    # Lightning runs checkpoint callbacks after the others, so the kill at step 7 came before any
    # save of it: the latest state on disk is step 6's
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert killed_at == KILL_AT // EVERY * EVERY

    resumed = _fit(in_run_folder, "--ckpt_path", "last")
    _, errors = resumed.communicate(timeout=600)
    errors = errors.decode()
    assert resumed.returncode == 0, errors[-3000:]
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["global_step"] == STEPS
    assert final["optimizer_states"][0]["state"]  # AdamW moments came back and went on
    assert final["lr_schedulers"][0]["last_epoch"] == STEPS  # the per-step schedule went on from where it was
    assert "Restoring states from the checkpoint path" in errors and "last.ckpt" in errors
    logged = pd.read_csv(in_run_folder / "results" / "resume" / "run" / "metrics.csv")
    steps = logged.dropna(subset=["train/loss"]).step  # step rows (epoch means share their epoch's last step)
    assert steps.is_unique and steps.max() == STEPS - 1  # one log of one run, no step trained twice
    configs = sorted(p.name for p in (in_run_folder / "results" / "resume" / "run").glob("config*.yaml"))
    assert configs == ["config-1.yaml", "config.yaml"]  # the first run's config is kept


class _BatchRecorder(Callback):
    """What each optimizer step trained on."""

    def __init__(self):
        self.batches = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches[trainer.global_step] = (tuple(batch["case_id"]), tuple(map(tuple, batch["prompts"])),
                                             float(batch["image"].sum()), float(batch["target"].sum()))


def _trainer_run(folder: str, max_steps: int, ckpt_path=None):
    from lightning_modules.command_line.experiment import build_experiment

    cli = build_experiment(["--config", CONFIG, *SMALL, "--data.samples_per_epoch", "8", "--trainer.max_epochs", "100",
                            "--trainer.max_steps", str(max_steps), "--trainer.limit_val_batches", "0",
                            "--trainer.logger", "false", "--trainer.default_root_dir", folder])
    recorder = _BatchRecorder()
    checkpoints = ModelCheckpoint(dirpath=f"{folder}/checkpoints", filename="{step}", monitor=None,
                                  every_n_train_steps=6, save_top_k=-1)
    cli.trainer.callbacks.extend([recorder, checkpoints])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return cli.model, recorder.batches, [str(w.message) for w in caught]


@pytest.mark.slow
def test_mid_epoch_resume_trains_on_the_same_batches_to_the_same_weights(in_run_folder):
    # 4 steps per epoch; the checkpoint at step 6 falls 2 batches into the second epoch
    straight, straight_batches, _ = _trainer_run("straight", max_steps=10)
    checkpoint = in_run_folder / "straight" / "checkpoints" / "step=6.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_served": 2}]

    resumed, resumed_batches, messages = _trainer_run("resumed", max_steps=10, ckpt_path=str(checkpoint))
    assert not [m for m in messages if "not resumable" in m], messages
    assert sorted(resumed_batches) == [6, 7, 8, 9]
    assert resumed_batches == {step: straight_batches[step] for step in range(6, 10)}
    assert_same_state(straight.state_dict(), resumed.state_dict())
