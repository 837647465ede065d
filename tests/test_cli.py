"""The Lightning CLI end to end on tiny phantoms: fit (fast_dev_run), print_config, test's CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from lightning_modules.command_line.main import main
from tests.conftest import REPO

CONFIG = str(REPO / "experiments" / "phantoms.yaml")
# a smaller network and loader than the demo's, so the CLI path is exercised in seconds
SMALL = ["--data.batch_size", "2", "--data.samples_per_epoch", "4",
         "--model.net.init_args.backbone.init_args.base_filters", "8"]
CSV_ONLY = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "results"]


def test_print_config_resolves_interpolation_and_links(in_run_folder, phantom_root, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", CONFIG, "--print_config"])
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: lightning_modules.training.schedules.RunLengthSchedule" in printed  # the default schedule
    assert f"root: {phantom_root}/la/la_utah/train" in printed  # ${oc.env:CARE_PHANTOMS,...}


@pytest.mark.slow
def test_fit_fast_dev_run(in_run_folder):
    main(["fit", "--config", CONFIG, *SMALL, "--trainer.fast_dev_run", "1"])


@pytest.mark.slow
def test_every_validation_keeps_its_case_table_and_logs_the_selected_metrics(in_run_folder, phantom_root):
    # one validation of every case (each center must log its figures), then a short second one
    args = ["validate", "--config", CONFIG, *SMALL, *CSV_ONLY, "--trainer.logger.version", "v"]
    main(args)
    check_selected_metrics_are_logged(in_run_folder / "results" / "lightning_logs" / "v" / "metrics.csv", phantom_root)
    main([*args, "--trainer.limit_val_batches", "2"])  # the same run folder again: a second file, the first one kept
    tables = sorted((in_run_folder / "results" / "lightning_logs" / "v" / "val_cases").glob("*.csv"))
    assert [t.name for t in tables] == ["step-0-1.csv", "step-0.csv"]
    assert pd.read_csv(tables[0]).uid.nunique() == 2
    for table in tables:
        rows = pd.read_csv(table)
        assert {"structure", "dice", "hd95", "epoch", "step"} <= set(rows.columns)


def selected_metric_names() -> set[str]:
    """Every metric an experiment's checkpoint or a sweep selects on."""
    names = set()
    for path in sorted((REPO / "experiments").rglob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        if "metric" in config:  # a W&B sweep
            names.add(config["metric"]["name"])
        for callback in (config.get("trainer") or {}).get("callbacks") or []:
            monitor = (callback.get("init_args") or {}).get("monitor")
            if monitor:
                names.add(monitor)
    return names


def check_selected_metrics_are_logged(metrics_csv, phantom_root) -> None:
    """A renamed metric would leave a sweep optimising nothing and ``best.ckpt`` never chosen."""
    selected = selected_metric_names()
    assert "val/ID/dice" in selected
    logged = set(pd.read_csv(metrics_csv).columns)
    assert selected <= logged, f"selected on but never logged: {sorted(selected - logged)}"
    centers = json.loads((phantom_root / "phantoms.json").read_text())["centers"]
    evaluated = {(c["task"], c["name"]) for c in centers if "val" in c["splits"]}
    assert len(evaluated) >= 2
    for task, center in evaluated:  # the per-center figures the OOD notebook and W&B panels read
        assert f"val/{task}/{center}/dice" in logged and f"val/{task}/{center}/hd95" in logged
    for task in {task for task, _ in evaluated}:
        assert {f"val/{task}/ID/dice", f"val/{task}/OOD/dice"} & logged
    assert {"val/OOD/dice", "val/ID/hd95"} <= logged


@pytest.mark.slow
def test_test_writes_one_row_per_case_and_structure(in_run_folder, phantom_root, capsys):
    main(["test", "--config", CONFIG, *SMALL, *CSV_ONLY, "--results.leaderboard_path", "board/leaderboard.csv"])
    printed = capsys.readouterr()
    assert "test: 10 batches" in printed.out and "test 10/10" in printed.out  # progress, as log lines here
    assert "checking files: 10/10" in printed.err and "preprocessing: 10/10" in printed.err
    runs = list((in_run_folder / "results" / "lightning_logs").glob("version_*"))
    assert len(runs) == 1
    rows = pd.read_csv(runs[0] / "test_cases.csv")
    assert rows.uid.nunique() == 10  # one test case per phantom center
    structures = {"la": 1, "whs": 7, "myops": 3}
    for uid, group in rows.groupby("uid"):
        assert len(group) == structures[group.task.iloc[0]] and group.structure.is_unique
    assert set(rows.role) == {"ID", "OOD"}
    assert {"dice", "hd", "hd95", "pred_ml", "ref_ml", "volume_error_ml", "center", "modality"} <= set(rows.columns)
    assert np.allclose(rows.volume_error_ml, rows.pred_ml - rows.ref_ml)
    centers = pd.read_csv(runs[0] / "test_centers.csv")
    assert {"volume_error_ml", "abs_volume_error_ml", "dice_sd", "dice_min", "cases"} <= set(centers.columns)
    # the worst case of each task x center x modality, drawn (one test case each here)
    pictures = sorted((runs[0] / "worst_cases").glob("*/*.png"))
    assert len(pictures) == 10 and all(p.name.startswith("1_") for p in pictures)
    board = pd.read_csv(in_run_folder / "board" / "leaderboard.csv")
    assert list(board.columns[:5]) == ["task", "split", "dice", "hd", "hd95"]
    assert set(zip(board.task, board.split)) == {(t, s) for t in structures for s in ("ID", "OOD")}
    pd.testing.assert_frame_equal(board, pd.read_csv(runs[0] / "leaderboard.csv"))


@pytest.mark.slow
def test_predict_returns_maps_on_the_original_grid(in_run_folder):
    import nibabel as nib
    import torch

    from lightning_modules.command_line.experiment import build_experiment

    cli = build_experiment(["--config", CONFIG, *SMALL, *CSV_ONLY, "--trainer.limit_predict_batches", "2"])
    outputs = cli.trainer.predict(cli.model, datamodule=cli.datamodule)
    assert len(outputs) == 2
    for out in outputs:
        case = next(c for c in cli.datamodule.cases("test") if c.case.uid == out["uid"])
        assert out["probabilities"].shape == (len(out["structures"]), *nib.load(case.case.image).shape)
        assert torch.all((out["probabilities"] >= 0) & (out["probabilities"] <= 1))


def test_check_prints_a_table_per_task_and_center(in_run_folder, capsys):
    assert main(["check", "--config", CONFIG]) == 0
    out = capsys.readouterr().out
    for center in ("la_utah", "whs_ct_a", "whs_mr_b", "myops_c3"):
        assert center in out
    assert "spacing_mm" in out and "no problems" in out
    assert "whole_fov_patch_2d" in out  # the plan from the training cases


def test_check_exits_nonzero_listing_every_broken_file(in_run_folder, phantom_root, tmp_path, capsys):
    import shutil

    import nibabel as nib
    import numpy as np

    broken = tmp_path / "broken"
    shutil.copytree(phantom_root / "myops" / "myops_c1" / "val", broken / "val")
    shutil.copytree(phantom_root / "whs" / "whs_ct_a" / "val", broken / "whs")
    image = next((broken / "val").rglob("*_LGE.nii.gz"))
    image.write_bytes(b"garbage")
    label_path = next((broken / "whs").rglob("*_label.nii.gz"))
    label = nib.load(label_path)
    codes = np.asanyarray(label.dataobj).copy()
    codes[0, 0, 0] = 999
    nib.save(nib.Nifti1Image(codes, label.affine, label.header), str(label_path))
    sources = ("[{layout: myops, task: myops, center: b1, modality: LGE, split: val, root: " + str(broken / "val")
               + "}, {layout: mmwhs, task: whs, center: b2, modality: CT, split: val, root: " + str(broken / "whs") + "}]")
    assert main(["check", "--config", CONFIG, "--data.sources", sources]) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert f"{image}: image file is unreadable" in err
    assert f"{label_path}: label codes [999] are not in the mmwhs layout" in err


def test_fit_stops_at_setup_naming_the_bad_file(in_run_folder, phantom_root, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(phantom_root / "la" / "la_utah" / "train", broken)
    label = next(broken.rglob("atriumSegImgMO.nii.gz"))
    label.unlink()
    sources = f"[{{layout: lascarqs, task: la, center: u, modality: LGE, split: train, root: {broken}}}]"
    with pytest.raises(ValueError, match=f"{label.parent / 'enhanced.nii.gz'}.*no label file"):
        main(["fit", "--config", CONFIG, *SMALL, "--data.sources", sources, "--trainer.fast_dev_run", "1"])


@pytest.mark.real_data
@pytest.mark.slow
def test_real_samples_experiment_checks_clean_and_trains(in_run_folder, sample_data, monkeypatch, capsys):
    monkeypatch.setenv("CARE_SAMPLE_DATA", str(sample_data))
    monkeypatch.setenv("CARE_CACHE", str(in_run_folder / "cache"))
    real = str(REPO / "experiments" / "real_samples.yaml")
    assert main(["check", "--config", real]) == 0
    out = capsys.readouterr().out
    assert "la_real" in out and "myops_real" in out and "acdc_real" in out and "C0" in out and "0.62" in out  # LA at 0.625 mm
    assert "96 x 72" in out and "283 x 279" in out  # median in-plane field of view at 1.25 mm: LA, MyoPS
    main(["fit", "--config", real, *SMALL, *CSV_ONLY, "--trainer.fast_dev_run", "1"])
    # train + val: LA 16 + 4, MyoPS LGE 20 + 5 and C0 5, ACDC 8 + 2 patients of 2 frames
    assert len(list((in_run_folder / "cache" / "volumes").glob("*.pt"))) == 16 + 4 + 20 + 5 + 5 + 2 * (8 + 2)


@pytest.mark.slow
@pytest.mark.parametrize("variant, extra", [("fixed_head.yaml", []),
                                            ("multiscale_decoder.yaml", ["--model.deep_supervision", "true"])])
def test_model_variants_are_one_config_switch(in_run_folder, variant, extra):
    main(["fit", "--config", CONFIG, "--config", str(REPO / "experiments" / variant), *SMALL, *extra,
          "--trainer.fast_dev_run", "1"])

