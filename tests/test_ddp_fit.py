"""DDP training on CPU: 2 processes (gloo) draw different patches, and the validation table they
log is the one a single process computes for the same weights."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy

from lightning_modules.cli import CareCLI, experiment_classes
from tests.test_cli import CONFIG, SMALL


class RecordCases(Callback):
    """Writes the cases of every training batch to cases-rank<r>.txt (module level: spawn pickles it)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with Path(f"cases-rank{trainer.global_rank}.txt").open("a") as stream:
            stream.write("".join(f"{task}/{case}\n" for task, case in zip(batch["task"], batch["case_id"])))


@pytest.mark.slow
def test_two_process_fit_samples_per_rank_and_validates_like_one_process(in_run_folder):
    cli = CareCLI(*experiment_classes(), parser_kwargs={"parser_mode": "omegaconf"},
                  args=["--config", CONFIG, *SMALL, "--trainer.logger", "false", "--data.samples_per_epoch", "8"],
                  run=False, save_config_callback=None)
    options = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
               "num_sanity_val_steps": 0}
    strategy = DDPStrategy(start_method="spawn", process_group_backend="gloo", timeout=timedelta(seconds=300))
    trainer = L.Trainer(devices=2, strategy=strategy, max_steps=2, check_val_every_n_epoch=1,
                        callbacks=[RecordCases(), ModelCheckpoint(dirpath="ckpt", save_last=True, save_top_k=0)],
                        **options)
    trainer.fit(cli.model, datamodule=cli.datamodule)
    ddp_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    ranks = [Path(f"cases-rank{r}.txt").read_text().split() for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2 * 2  # 8 patches per epoch: 4 per rank, 2 steps of 2
    assert ranks[0] != ranks[1]  # each rank draws its own half of the epoch

    single = L.Trainer(devices=1, **options).validate(cli.model, datamodule=cli.datamodule,
                                                        ckpt_path="ckpt/last.ckpt", weights_only=True)[0]
    assert ddp_metrics and set(ddp_metrics) == {k for k in single if k.startswith("val/")}
    for key, value in ddp_metrics.items():
        assert value == pytest.approx(single[key], abs=1e-6), key
