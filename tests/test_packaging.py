"""A wheel install carries what the commands read at run time: the shipped experiments and the
held-out prompt lists (read through the package, never through a checkout's paths)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from experiments import shipped_experiments
from lightning_modules.command_line.experiment_files import experiment_path, with_bases
from lightning_modules.command_line.main import DESCRIPTIONS, main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_every_experiment_and_prompt_list(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, cwd=tmp_path)
    wheel, = tmp_path.glob("care_cardiac-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {str(p.relative_to(REPO)) for folder in ("experiments", "vocabulary") for p in (REPO / folder).rglob("*.yaml")}
    assert wanted and wanted <= names, sorted(wanted - names)
    assert not any(name.startswith("tests/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "care-cardiac = lightning_modules.command_line.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_a_shipped_experiment_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("phantoms", "phantoms.yaml", "experiments/phantoms.yaml"):
        assert experiment_path(name) == shipped_experiments() / "phantoms.yaml"
    assert [p.name for p in with_bases(experiment_path("backbones/swinunetr.yaml"))] == ["swinunetr.yaml"]
    own = tmp_path / "phantoms.yaml"  # a file of the user's own wins over the shipped one
    own.write_text("base: base.yaml\ndata: {batch_size: 2}\n")
    assert experiment_path("phantoms.yaml") == Path("phantoms.yaml")
    # and its base, absent beside it, is the shipped one
    assert with_bases(Path("phantoms.yaml")) == [shipped_experiments() / "base.yaml", Path("phantoms.yaml")]
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="names itself"):
        with_bases(Path("loop.yaml"))


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    printed = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "evaluate", "check", "prompts", "phantoms"):
        assert f"\n  {name} " in printed
    assert set(DESCRIPTIONS) == {"fit", "validate", "test", "predict", "evaluate", "check", "prompts", "phantoms"}
    assert main(["nonsense"]) == 2 and "unknown subcommand 'nonsense'" in capsys.readouterr().err
