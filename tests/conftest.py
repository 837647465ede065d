"""Shared fixtures: a small phantom benchmark in a temp folder, and the real sample cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from datamodules.phantoms import write_phantoms

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """Phantoms for every center: 2 training cases per ID center, 1 val and 1 test case each."""
    return write_phantoms(tmp_path_factory.mktemp("phantoms") / "data", seed=0, cases_per_center=2, eval_cases=1)


def assert_same_state(state: dict, other: dict) -> None:
    """Two state dicts hold bit-identical weights and equal extra state (the prompt encoder's
    record of its text model, plain data)."""
    assert state.keys() == other.keys()
    for name, value in state.items():
        if torch.is_tensor(value):
            torch.testing.assert_close(other[name], value, rtol=0, atol=0, msg=name)
        else:
            assert other[name] == value, name


@pytest.fixture
def one_thread(monkeypatch):
    """One thread in this process and in every process it spawns (DDP ranks), so kernels round
    alike and results of 1 and 2 processes can be compared exactly; without OMP_NUM_THREADS,
    Lightning gives each CPU rank cores // ranks threads, which differs from this process's."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def phantom_cache(tmp_path_factory) -> Path:
    """One preprocessing cache for the session's CLI runs: its entries are keyed by file content
    and settings, so runs share them as a user's runs do; tests of the cache itself use their own."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def in_run_folder(tmp_path, monkeypatch, phantom_root, phantom_cache):
    """A fresh working folder for a CLI run on the phantoms (no W&B chatter, no run id), sharing
    the session's preprocessing cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARE_PHANTOMS", str(phantom_root))
    monkeypatch.setenv("CARE_CACHE", str(phantom_cache))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("CARE_RUN_ID", raising=False)
    return tmp_path


# The README's default place of the real sample cases, as the experiments' ``${oc.env:CARE_SAMPLE_DATA,../shared/data}``
# resolves it from the repository root
DEFAULT_SAMPLE_DATA = REPO.parent / "shared" / "data"


def sample_data_root() -> tuple[Path, bool]:
    """Where the real sample cases are looked for, and whether ``CARE_SAMPLE_DATA`` named it."""
    value = os.environ.get("CARE_SAMPLE_DATA")
    return (Path(value), True) if value else (DEFAULT_SAMPLE_DATA, False)


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The real sample cases: ``CARE_SAMPLE_DATA``, else the README's default ``../shared/data``.

    Only an absent default skips (the reason shows in the summary: ``make test`` runs with
    ``-rs``); a folder that is named or present but lacks the sample folders fails.
    """
    root, named = sample_data_root()
    if not named and not root.exists():
        pytest.skip(f"real sample cases not found: CARE_SAMPLE_DATA is unset and {root} does not exist")
    if not (root / "myops_real").is_dir() or not (root / "la_real").is_dir():
        origin = "CARE_SAMPLE_DATA" if named else "the default sample folder"
        pytest.fail(f"{origin} {root} does not hold myops_real/ and la_real/")
    return root


def phantom_sources(root: Path, splits=("train", "val", "test")) -> list:
    """DataSource entries for every phantom center and split present under ``root``."""
    import json

    from datamodules.case import DataSource

    description = json.loads((root / "phantoms.json").read_text())
    sources = []
    for center in description["centers"]:
        for split in center["splits"]:
            if split in splits:
                sources.append(DataSource(layout=center["layout"], root=str(root / center["task"] / center["name"] / split),
                                          task=center["task"], center=center["name"], modality=center["modality"], split=split))
    return sources
