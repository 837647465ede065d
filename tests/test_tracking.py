"""W&B: online only where credentials exist, offline otherwise, offline when online fails; the
config, per-case tables and overlays reach the run; checkpoints carry the config and load weights-only."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from lightning_modules.command_line.main import main
from lightning_modules.evaluation.tracking import CareWandbLogger, resolve_mode
from tests.test_cli import CONFIG, SMALL


@pytest.fixture
def clean_wandb_env(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of this machine
    return tmp_path


def test_mode_follows_the_machines_credentials(clean_wandb_env, monkeypatch):
    assert resolve_mode("auto") == "offline"  # nothing configured: never a prompt, never online
    (clean_wandb_env / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert resolve_mode("auto") == "online"
    (clean_wandb_env / ".netrc").write_text("machine github.com\n  login user\n  password abc\n")
    assert resolve_mode("auto") == "offline"  # credentials for another host do not count
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("offline") == "offline"
    with pytest.raises(ValueError, match="mode must be"):
        CareWandbLogger(mode="sometimes")


def test_a_failed_online_start_falls_back_to_offline(clean_wandb_env, monkeypatch):
    import wandb

    real_init = wandb.init

    def init(**kwargs):
        if kwargs.get("mode") is None and __import__("os").environ.get("WANDB_MODE") != "dryrun":
            raise wandb.errors.CommError("network is unreachable")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    logger = CareWandbLogger(mode="auto", save_dir=str(clean_wandb_env / "wandb"), name="fallback")
    assert logger.mode == "online"
    with pytest.warns(UserWarning, match="logging offline instead"):
        run = logger.experiment
    assert logger.mode == "offline" and run.settings.mode in ("offline", "dryrun")
    run.finish()


@pytest.mark.slow
def test_offline_run_gets_config_tables_overlays_and_checkpoints_carry_the_config(in_run_folder, clean_wandb_env,
                                                                                 monkeypatch):
    monkeypatch.chdir(in_run_folder)
    monkeypatch.setenv("CARE_RUN_ID", "tracked")
    main(["fit", "--config", CONFIG, *SMALL, "--trainer.max_steps", "2", "--trainer.check_val_every_n_epoch", "1",
          "--trainer.limit_val_batches", "2", "--overlays.cases", "2"])
    import wandb

    wandb.finish()  # what process exit does for a CLI run: the run's files (config.yaml) are flushed
    runs = list((in_run_folder / "results" / "phantoms" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    # the resolved config went to every logger (the CSV logger writes what W&B receives to hparams.yaml)
    config = yaml.safe_load((in_run_folder / "results" / "phantoms" / "tracked" / "hparams.yaml").read_text())
    assert config["model"]["net"]["class_path"] == "networks.segmenter.PromptSegmenter"
    assert config["overlays"]["cases"] == 2
    assert list((files / "media" / "table" / "val").glob("cases_*.table.json"))
    overlays = list((files / "media" / "images" / "val").glob("overlays_*.png"))
    assert len(overlays) == 2
    table = json.loads(next((files / "media" / "table" / "val").glob("cases_*.table.json")).read_text())
    assert {"uid", "structure", "dice", "hd95", "role"} <= set(table["columns"])

    checkpoint = in_run_folder / "results" / "phantoms" / "tracked" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # no arbitrary unpickling needed
    assert "patch_size" in state["experiment_config"] and state["global_step"] == 2
