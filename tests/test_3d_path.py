"""The 3D experiment end to end on CPU: ``care_unified.yaml`` itself (same components: 3D plain
U-Net, prompt decoder, sliding-window inference, bf16 autocast, its callbacks and checkpoints),
shrunk to tiny sizes, fits a few steps on the phantoms, validates, tests and predicts, and writes
the same kinds of files as the 2D demo."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from lightning_modules.command_line.main import main
from tests.conftest import REPO
from tests.oracle import oracle_volumes

CONFIG = str(REPO / "experiments" / "care_unified.yaml")
# tiny sizes, same components; bf16 autocast runs on any CPU (emulated where the CPU lacks it)
TINY_3D = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
           "--trainer.precision", "bf16-mixed", "--trainer.accumulate_grad_batches", "1",
           "--model.net.init_args.backbone.init_args.base_filters", "4",
           "--model.net.init_args.backbone.init_args.max_filters", "16",
           "--model.net.init_args.prompt_encoder.init_args.embed_dim", "32",
           "--model.net.init_args.decoder.init_args.num_heads", "2",
           "--data.patch_size", "[64, 64, 32]", "--data.batch_size", "2", "--data.samples_per_epoch", "4",
           "--data.num_workers", "0", "--model.inferer.init_args.overlap", "0.25",
           "--model.inferer.init_args.sw_batch_size", "8"]
# plumbing only (no assertion reads the blending or the grid's fineness): windows edge to edge and
# a coarser grid, so fewer windows (63 -> 52 s on 2 cores); the oracle below keeps the recipe's
# overlap and spacing and checks the blending exactly
PLUMBING = [*TINY_3D, "--model.inferer.init_args.overlap", "0.0",
            "--data.preprocessing.target_spacing", "{la: 2.0, whs: 3.0, myops: 2.5}"]
CSV = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "results",
       "--trainer.logger.name", "care_unified", "--trainer.logger.version", "tiny"]


@pytest.fixture
def phantom_centers(in_run_folder, monkeypatch, phantom_root):
    """care_unified.yaml's sources read <root>/<center>/<split>; the phantoms have its centers."""
    for task in ("la", "whs", "myops"):
        monkeypatch.setenv(f"CARE_{task.upper()}_ROOT", str(phantom_root / task))
    monkeypatch.setenv("CARE_CACHE", str(in_run_folder / "cache"))
    return phantom_root


@pytest.mark.slow
def test_the_3d_experiment_fits_validates_tests_and_predicts(in_run_folder, phantom_centers):
    main(["fit", "--config", CONFIG, *PLUMBING, *CSV, "--trainer.max_steps", "2"])
    run = in_run_folder / "results" / "care_unified" / "tiny"
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["train/loss"].notna().sum() >= 1 and np.isfinite(metrics["train/loss"].dropna()).all()
    assert metrics["val/ID/dice"].notna().any()  # validated after the last step
    validated = pd.read_csv(next((run / "val_cases").glob("*.csv")))
    assert validated.uid.nunique() == 10 and set(validated.task) == {"la", "whs", "myops"}
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert (run / "checkpoints" / "best.ckpt").exists() and checkpoint.exists()
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"] == 2

    main(["test", "--config", CONFIG, *PLUMBING, *CSV[:-1], "tiny-test", "--ckpt_path", str(checkpoint)])
    tested = in_run_folder / "results" / "care_unified" / "tiny-test"
    rows = pd.read_csv(tested / "test_cases.csv")
    assert rows.uid.nunique() == 10 and {"dice", "hd95", "pred_ml", "ref_ml"} <= set(rows.columns)
    board = pd.read_csv(tested / "leaderboard.csv")
    assert set(zip(board.task, board.split)) == {(t, s) for t in ("la", "whs", "myops") for s in ("ID", "OOD")}

    assert main(["predict", "--config", CONFIG, *PLUMBING, "--ckpt_path", str(checkpoint), "--split", "test",
                 "--center", "whs_ct_a", "--output", "pred"]) == 0
    index = json.loads((in_run_folder / "pred" / "prediction.json").read_text())
    image = next((phantom_centers / "whs" / "whs_ct_a" / "test").rglob("*_image.nii.gz"))
    written = nib.load(in_run_folder / "pred" / index["files"][next(iter(index["files"]))])
    assert written.shape == nib.load(image).shape and np.allclose(written.affine, nib.load(image).affine)
    assert set(np.unique(np.asanyarray(written.dataobj))) <= {0, 205, 420, 500, 550, 600, 820, 850}


@pytest.mark.slow
def test_oracle_3d_sliding_windows_exact_under_bf16(in_run_folder, phantom_centers, monkeypatch):
    # the 3D inferer's windows, padding and Gaussian blending under bf16 autocast give the reference back
    from tests.test_oracle import NOT_RESAMPLED, ORACLE, assert_exact

    with oracle_volumes(monkeypatch):
        main(["test", "--config", CONFIG, *TINY_3D, *CSV, *ORACLE, *NOT_RESAMPLED, "--model.tta_axes", "[0, 1, 2]"])
    rows = pd.read_csv(in_run_folder / "results" / "care_unified" / "tiny" / "test_cases.csv")
    assert rows.uid.nunique() == 10
    assert_exact(rows)
