"""Settings that cannot be silently wrong: overrides reach every derived value, values that must
agree are set once, run-length schedules follow the trainer, validation happens at the end."""

from __future__ import annotations

import types

import pytest
import torch
from lightning.pytorch.callbacks import Callback, Timer

from lightning_modules.command_line.experiment import build_experiment
from lightning_modules.command_line.main import main
from lightning_modules.training.schedules import RunLengthSchedule
from tests.conftest import REPO
from tests.test_cli import CONFIG, SMALL

NO_LOGGER = ["--trainer.logger", "false"]

# an inferer named in the experiment (without one, the module builds it from data.patch_size at setup)
SLICES = ["--model.inferer", "monai.inferers.SliceInferer", "--model.inferer.init_args.spatial_dim", "2"]


def test_interpolations_resolve_after_every_config_and_override(in_run_folder):
    # a second YAML interpolates a value of the first; the command line then changes the source
    extra = in_run_folder / "extra.yaml"
    extra.write_text("data:\n  samples_per_epoch: ${data.batch_size}\noverlays:\n  cases: ${data.batch_size}\n")
    cli = build_experiment(["--config", CONFIG, "--config", str(extra), "--data.batch_size", "6", *NO_LOGGER])
    overlays = next(c for c in cli.trainer.callbacks if type(c).__name__ == "WandbOverlays")
    assert cli.datamodule.samples_per_epoch == 6 and overlays.cases == 6
    # an override given in the sweep agent's --key=value form reaches it the same way
    cli = build_experiment(["--config", CONFIG, "--config", str(extra), "--data.batch_size=3", *NO_LOGGER])
    assert cli.datamodule.samples_per_epoch == 3


def test_patch_size_reaches_the_inferer_and_the_backbone(in_run_folder):
    cli = build_experiment(["--config", CONFIG, "--data.patch_size", "[96, 96]", *SLICES, *NO_LOGGER])
    assert list(cli.model.inferer.roi_size) == [96, 96]
    convolutions = [m for m in cli.model.net.backbone.modules() if isinstance(m, torch.nn.Conv3d)]
    assert not convolutions  # 2 patch sizes: a 2D backbone


def test_decoder_sizes_follow_the_backbone_and_prompt_encoder(in_run_folder):
    cli = build_experiment(["--config", CONFIG, "--model.net.init_args.backbone.init_args.out_channels", "24",
                            "--model.net.init_args.prompt_encoder.init_args.embed_dim", "64", *NO_LOGGER])
    decoder = cli.model.net.decoder
    assert decoder.feature_channels == 24 and decoder.layers[0].self_attn.embed_dim == 64
    multiscale = build_experiment(["--config", CONFIG, "--config", str(REPO / "experiments" / "multiscale_decoder.yaml"),
                                   "--model.net.init_args.backbone.init_args.base_filters", "8", *NO_LOGGER])
    # the plain U-Net's widths double from base_filters up to max_filters (256): 8, 16, ..., 256 at
    # the 1/32 bottleneck, 128 at the 1/16 decoder stage; its output has out_channels
    assert multiscale.model.net.decoder.memory_channels == [256, 128, 32]


@pytest.mark.parametrize("override, message", [
    (["--model.net.init_args.decoder.init_args.feature_channels", "16"], "feature_channels"),
    ([*SLICES, "--model.inferer.init_args.roi_size", "[32, 32]"], "roi_size"),
    (["--model.net.init_args.backbone.init_args.spatial_dims", "1"], "data.patch_size makes it 2"),
    ([*SLICES, "--data.patch_size", "[64, 64, 64]"], "SliceInferer"),
    ([*SLICES, "--model.inferer.init_args.cval", "-1.5"], "training patches are padded with the constant 0.0"),
], ids=["decoder-channels", "inferer-window", "backbone-dims", "3d-patch-2d-inferer", "inferer-padding"])
def test_a_derived_setting_typed_by_hand_is_refused_naming_both(in_run_folder, capsys, override, message):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", CONFIG, *override, *NO_LOGGER, "--trainer.fast_dev_run", "1"])
    assert stop.value.code != 0
    assert message in capsys.readouterr().err


def test_unknown_modality_is_refused_naming_the_source(in_run_folder, phantom_root, capsys):
    root = phantom_root / "whs" / "whs_ct_a" / "train"
    sources = f"[{{layout: mmwhs, task: whs, center: a, modality: ct, split: train, root: {root}}}]"
    assert main(["check", "--config", CONFIG, "--data.sources", sources]) == 1
    assert f"source '{root}' (whs/a/train): unknown modality 'ct' (did you mean 'CT'?)" in capsys.readouterr().err


@pytest.mark.parametrize("schedule, points", [
    (RunLengthSchedule(warmup_fraction=0.2), {0.0: 0.001, 0.1: 0.5, 0.2: 1.0, 0.6: 0.5, 1.0: 0.0}),
    (RunLengthSchedule(final_fraction=0.1), {0.0: 1.0, 0.5: 0.55, 1.0: 0.1}),
], ids=["cosine-warmup", "cosine-floor"])
def test_schedule_factor_at_each_point_of_the_run(schedule, points):
    assert [schedule.factor(p) for p in points] == pytest.approx(list(points.values()), abs=1e-9)


def test_run_progress_follows_steps_and_time():
    from lightning_modules.training.module import CardiacSegmentationModule

    module = CardiacSegmentationModule(torch.nn.Identity(), deep_supervision=False)  # only run_progress is used
    module._trainer = types.SimpleNamespace(estimated_stepping_batches=40, callbacks=[])
    assert module.run_progress(10) == pytest.approx(0.25)
    timer = Timer(duration={"seconds": 100})
    timer.load_state_dict({"time_elapsed": {"train": 60.0}})  # a resumed run: 60 s used so far
    module._trainer = types.SimpleNamespace(estimated_stepping_batches=float("inf"), callbacks=[timer])
    assert module.run_progress(3) == pytest.approx(0.6)  # max_time only: progress is time
    module._trainer = types.SimpleNamespace(estimated_stepping_batches=40, callbacks=[timer])
    assert module.run_progress(30) == pytest.approx(0.75)  # both: whichever ends the run first
    module._trainer = types.SimpleNamespace(estimated_stepping_batches=float("inf"), callbacks=[])
    with pytest.raises(ValueError, match="max_epochs, max_steps or max_time"):
        module.run_progress(1)


class RecordRun(Callback):
    """Learning rate per optimizer step, the global steps at which validation ran, and the step
    of ``last.ckpt`` as each epoch starts."""

    def __init__(self):
        self.rates, self.validated_at, self.last_at_epoch_start = [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        paths = [c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path]
        if paths:
            self.last_at_epoch_start.append(torch.load(paths[0], weights_only=True)["global_step"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_validation_end(self, trainer, pl_module):
        self.validated_at.append(trainer.global_step)


@pytest.mark.slow
@pytest.mark.parametrize("length, steps", [(["--trainer.max_epochs", "3"], 6), (["--trainer.max_steps", "5"], 5)],
                         ids=["max_epochs", "max_steps"])
def test_overridden_run_length_gives_a_whole_schedule_and_a_final_validation(in_run_folder, capsys, length, steps):
    # the README's `fit --config experiments/phantoms.yaml --trainer.max_epochs 30` pattern, shrunk
    cli = build_experiment(["--config", CONFIG, *SMALL, *length, "--trainer.limit_val_batches", "2",
                            "--model.lr_schedule.warmup_fraction", "0.2", *NO_LOGGER])
    record = RecordRun()
    cli.trainer.callbacks.append(record)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    lr = cli.model.optimizers().param_groups[0]["initial_lr"]
    assert len(record.rates) == steps
    assert record.rates[0] < 0.5 * lr  # warming up
    assert max(record.rates) == pytest.approx(lr, rel=0.2)
    assert cli.model.lr_schedulers().get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)  # decayed to the end
    assert record.validated_at == [steps]  # once, after the last step, however the length was set
    # the latest state is kept after every epoch, validated or not (2 steps per epoch), and at the end
    assert record.last_at_epoch_start == [2, 4][:len(record.last_at_epoch_start)] and record.last_at_epoch_start
    last = [c.last_model_path for c in cli.trainer.checkpoint_callbacks if c.last_model_path]
    assert torch.load(last[0], weights_only=True)["global_step"] == steps
    printed = capsys.readouterr().out  # not a terminal: progress as plain lines
    assert "fit: up to" in printed and "epoch 1/" in printed and "validation: 2 batches" in printed


def test_progress_is_a_rich_bar_on_a_terminal_and_log_lines_elsewhere(in_run_folder, monkeypatch, capsys):
    from lightning.pytorch.callbacks import RichProgressBar

    from datamodules.progress import reported
    from lightning_modules.command_line import progress_bar as progress

    bars = lambda cli: [c for c in cli.trainer.callbacks if isinstance(c, (RichProgressBar, progress.LogLineProgress))]
    assert [type(b) for b in bars(build_experiment(["--config", CONFIG, *NO_LOGGER]))] == [progress.LogLineProgress]
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    assert [type(b) for b in bars(build_experiment(["--config", CONFIG, *NO_LOGGER]))] == [RichProgressBar]
    capsys.readouterr()
    monkeypatch.setattr("datamodules.progress.on_terminal", lambda: False)
    assert list(reported(range(3), 3, "counting", every_seconds=1e9)) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "counting: 0/3" and lines[-1].startswith("counting: 3/3") and len(lines) == 2


def test_the_module_is_lean_and_the_cli_modules_do_not_import_each_other():
    import subprocess
    import sys

    # predict builds experiments through the builder module, not through the fit/test CLI
    code = "import sys, lightning_modules.command_line.predict; print('lightning_modules.command_line.main' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "False"
    # files, tables and pictures are callbacks; the module neither writes nor draws
    module_source = (REPO / "lightning_modules" / "training" / "module.py").read_text()
    for name in ("write_csv", ".log_table(", ".log_image(", "overlay_panel", "KeepLargestConnectedComponent"):
        assert name not in module_source, name
