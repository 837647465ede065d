"""Under DDP every test case is scored once: 2 CPU processes (gloo) give 1 process's table, also when
the cases do not split evenly (the distributed sampler pads one rank with a repeated case)."""

from __future__ import annotations

from datetime import timedelta

import lightning as L
import pandas as pd
import pytest
from lightning.pytorch.strategies import DDPStrategy

from lightning_modules.command_line.experiment import build_experiment
from lightning_modules.evaluation.reporting import ResultTables
from tests.test_cli import CONFIG, SMALL


@pytest.mark.slow
def test_two_processes_give_the_same_case_table_as_one(in_run_folder, one_thread):
    # exact comparison: an untrained model has voxels near the threshold, where 1e-7 flips one
    _compare_one_and_two_processes(in_run_folder)


def _compare_one_and_two_processes(in_run_folder):
    # myops: 3 test cases (two ID centers, one OOD), so 2 ranks get 2 each and one case is scored twice
    cli = build_experiment(["--config", CONFIG, *SMALL, "--trainer.logger", "false", "--data.tasks", "[myops]"])
    options = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
               "callbacks": [ResultTables()]}
    L.Trainer(devices=1, default_root_dir="one", **options).test(cli.model, datamodule=cli.datamodule)
    # spawn, not the default subprocess launcher, which would re-run pytest in the children
    strategy = DDPStrategy(start_method="spawn", process_group_backend="gloo", timeout=timedelta(seconds=300))
    L.Trainer(devices=2, strategy=strategy, default_root_dir="two", **options).test(cli.model, datamodule=cli.datamodule)
    one = pd.read_csv(in_run_folder / "one" / "test_cases.csv")
    two = pd.read_csv(in_run_folder / "two" / "test_cases.csv")
    assert one.uid.nunique() == 3 and not one.duplicated(["uid", "structure"]).any()
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(pd.read_csv(in_run_folder / "one" / "leaderboard.csv"),
                                  pd.read_csv(in_run_folder / "two" / "leaderboard.csv"))
