"""The GPU check script: it refuses without a GPU, and its whole code path runs at toy sizes on CPU."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the check would run, not refuse")
def test_refuses_without_a_gpu(capsys):
    assert gpu_check.main([]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_run_covers_every_measurement_and_prints_the_summary_last(capsys, monkeypatch, tmp_path, phantom_root):
    monkeypatch.chdir(tmp_path)
    for task in ("la", "whs", "myops"):  # restored after the test (the check sets them for its own phantoms)
        monkeypatch.setenv(f"CARE_{task.upper()}_ROOT", "unset")
    assert gpu_check.main(["--tiny", "--repeats", "1", "--phantoms", str(phantom_root)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert sum("train step" in line for line in lines) == 3 and sum("loader," in line for line in lines) == 2
    assert any(line.startswith("inference, volume 64x64x40, 7 prompts") for line in lines)
    summary = dict(word.split("=", 1) for word in lines[-1].split())
    assert set(summary) == {"gpu", "step_s_7_vs_1", "conditioning_vs_backbone", "loader_vs_step_4w",
                            "loader_vs_step_8w", "inference_s", "fits_40gb"}
    assert all(float(summary[key]) > 0 for key in summary if key not in ("gpu", "fits_40gb"))
