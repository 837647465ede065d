"""DDP training on CPU: 2 processes (gloo) draw different patches, the validation table they log
is the one a single process computes for the same weights, and a DDP run resumed mid-epoch
trains on the same patches to the same weights."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy

from lightning_modules.command_line.experiment import build_experiment
from tests.conftest import assert_same_state
from tests.test_cli import CONFIG, SMALL


class RecordCases(Callback):
    """Writes ``step task/case image-sum`` per training patch to <prefix>-rank<r>.txt (module
    level: spawn pickles it)."""

    def __init__(self, prefix: str = "cases"):
        self.prefix = prefix

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with Path(f"{self.prefix}-rank{trainer.global_rank}.txt").open("a") as stream:
            stream.write("".join(f"{trainer.global_step} {task}/{case} {float(image.sum()):.6f}\n"
                                 for task, case, image in zip(batch["task"], batch["case_id"], batch["image"])))


class RecordPreparation(Callback):
    """Writes, per rank, how many cache entries the rank built and a digest of its preprocessed
    training and validation volumes (module level: spawn pickles it)."""

    def on_train_start(self, trainer, pl_module):
        datamodule = trainer.datamodule
        digest = hashlib.sha256()
        for split in ("train", "val"):
            for case in datamodule.cases(split):
                digest.update(case.case.uid.encode())
                digest.update(case.image.numpy().tobytes())
                digest.update(case.label.numpy().tobytes())
        Path(f"prepared-rank{trainer.global_rank}.json").write_text(json.dumps(
            {"built": datamodule.cache_entries_built, "digest": digest.hexdigest()}))


def _recorded(prefix: str) -> list[list[list[str]]]:
    return [[line.split() for line in Path(f"{prefix}-rank{r}.txt").read_text().splitlines()] for r in (0, 1)]


@pytest.mark.slow
def test_two_process_fit_samples_per_rank_and_validates_like_one_process(in_run_folder, monkeypatch, one_thread):
    monkeypatch.setenv("CARE_CACHE", str(in_run_folder / "cache"))  # empty: the first launch fills it
    # two tasks keep the weighted draw across tasks; whs (4 centers, the largest volumes) only
    # lengthens the three validations
    cli = build_experiment(["--config", CONFIG, *SMALL, "--trainer.logger", "false", "--data.samples_per_epoch", "8",
                            "--data.tasks", "[la, myops]"])
    options = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
               "num_sanity_val_steps": 0}
    def strategy():
        return DDPStrategy(start_method="spawn", process_group_backend="gloo", timeout=timedelta(seconds=300))

    every_step = ModelCheckpoint(dirpath="ckpt", filename="{step}", save_last=True, save_top_k=-1,
                                 every_n_train_steps=1)
    trainer = L.Trainer(devices=2, strategy=strategy(), max_steps=2, check_val_every_n_epoch=1,
                        callbacks=[RecordCases(), RecordPreparation(), every_step], **options)
    trainer.fit(cli.model, datamodule=cli.datamodule)
    # data preparation ran once: rank 0 checked and wrote every cache entry, rank 1 read them
    prepared = [json.loads(Path(f"prepared-rank{r}.json").read_text()) for r in (0, 1)]
    entries = list((in_run_folder / "cache" / "volumes").glob("*.pt"))
    assert prepared[0]["built"] == len(entries) > 0 and prepared[1]["built"] == 0
    assert prepared[0]["digest"] == prepared[1]["digest"]  # both ranks train on the same preprocessed data
    ddp_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    recorded = _recorded("cases")
    ranks = [[case for _, case, _ in rows] for rows in recorded]
    assert len(ranks[0]) == len(ranks[1]) == 2 * 2  # 8 patches per epoch: 4 per rank, 2 steps of 2
    assert ranks[0] != ranks[1]  # each rank draws its own half of the epoch
    # resume from step 1, half-way through the epoch (2 steps per rank), on 2 processes again
    # (before anything runs the model in this process: spawn would carry its prompt cache, made
    # with this process's thread count, into the ranks)
    resumed = L.Trainer(devices=2, strategy=strategy(), max_steps=2, check_val_every_n_epoch=1,
                        callbacks=[RecordCases("resumed"), ModelCheckpoint(dirpath="resumed", save_last=True,
                                                                           save_top_k=0)], **options)
    resumed.fit(cli.model, datamodule=cli.datamodule, ckpt_path="ckpt/step=1.ckpt", weights_only=True)
    assert _recorded("resumed") == [[row for row in rows if row[0] == "1"] for rows in recorded]
    straight = torch.load("ckpt/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    again = torch.load("resumed/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert_same_state(straight, again)

    datamodule = cli.datamodule
    datamodule.setup("fit")
    cases = datamodule.cases("train")
    epoch = [f"{cases[draw.case].case.task}/{cases[draw.case].case.case_id}"
             for draw in datamodule.train_dataloader().sampler]
    assert sorted(ranks[0] + ranks[1]) == sorted(epoch)  # the weighted draw, split, not some other sampler

    single = L.Trainer(devices=1, **options).validate(cli.model, datamodule=cli.datamodule,
                                                        ckpt_path="ckpt/last.ckpt", weights_only=True)[0]
    assert ddp_metrics and set(ddp_metrics) == {k for k in single if k.startswith("val/")}
    for key, value in ddp_metrics.items():
        assert value == pytest.approx(single[key], abs=1e-6), key


class RecordWeights(Callback):
    """Writes each rank's weights digest after training, and the task count of each batch it
    trained on (module level: spawn pickles it)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with Path(f"tasks-rank{trainer.global_rank}.txt").open("a") as stream:
            stream.write(f"{len(set(batch['task']))}\n")

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for name, value in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().numpy().tobytes() if torch.is_tensor(value) else repr(value).encode())
        Path(f"weights-rank{trainer.global_rank}.txt").write_text(digest.hexdigest())


@pytest.mark.slow
def test_balanced_task_gradients_train_under_ddp_with_one_set_of_weights(in_run_folder, monkeypatch):
    # the balanced step hands DDP a stand-in loss whose gradient is the combined one: DDP must
    # still average it over the ranks, leaving every rank with the same weights, and they must move
    monkeypatch.setenv("CARE_CACHE", str(in_run_folder / "cache"))
    cli = build_experiment(["--config", CONFIG, *SMALL, "--trainer.logger", "false", "--data.samples_per_epoch", "8",
                            "--data.batch_size", "4",
                            "--model.task_gradients", "lightning_modules.training.task_gradients.BalancedTaskGradients"])
    before = {k: v.clone() for k, v in cli.model.state_dict().items() if torch.is_tensor(v)}
    trainer = L.Trainer(devices=2, accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        strategy=DDPStrategy(start_method="spawn", process_group_backend="gloo",
                                             timeout=timedelta(seconds=300)),
                        callbacks=[RecordWeights(), ModelCheckpoint(dirpath="ckpt", save_last=True, save_top_k=0)])
    trainer.fit(cli.model, datamodule=cli.datamodule)
    counts = [int(n) for r in (0, 1) for n in Path(f"tasks-rank{r}.txt").read_text().split()]
    assert max(counts) > 1  # a mixed batch took the balanced path (in this draw the other rank's is one task)
    digests = [Path(f"weights-rank{r}.txt").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    after = torch.load("ckpt/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("net.backbone"))
