"""The splits file: subjects to splits per center, one fold at a time; sources that follow it."""

import json

import pytest

from datamodules.case import DataSource
from datamodules.manifest import Manifest
from datamodules.splits import Splits
from tests.test_readers import _acdc_release


def _splits(tmp_path, table) -> str:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(table))
    return str(path)


def test_cases_take_their_subject_s_split_and_sources_keep_only_theirs(tmp_path):
    _acdc_release(tmp_path / "acdc", info=False)
    table = {"dijon": {"test": ["patient002"], "folds": [{"train": ["patient001"], "val": []},
                                                          {"train": [], "val": ["patient001"]}]}}
    every = DataSource("acdc", str(tmp_path / "acdc"), "acdc", "dijon", "bSSFP")
    manifest = Manifest.from_sources([every], Splits(_splits(tmp_path, table)))
    assert {(c.case_id, c.split) for c in manifest.cases} == {
        ("patient001_frame01", "train"), ("patient001_frame12", "train"),
        ("patient002_frame01", "test"), ("patient002_frame09", "test")}
    second_fold = Manifest.from_sources([every], Splits(_splits(tmp_path, table), fold=1))
    assert {c.split for c in second_fold.cases if c.subject == "patient001"} == {"val"}
    only_test = DataSource("acdc", str(tmp_path / "acdc"), "acdc", "dijon", "bSSFP", split=["test"])
    assert {c.split for c in Manifest.from_sources([only_test], Splits(_splits(tmp_path, table))).cases} == {"test"}
    held_out = Manifest.from_sources([every], Splits(_splits(tmp_path, table)), unseen_centers=["dijon"])
    assert {c.split for c in held_out.cases} == {"test"}  # its train and val left out
    assert set(held_out.to_frame().role) == {"OOD"}


def test_bad_splits_files_are_refused_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="splits.json.*unreadable"):
        Splits(tmp_path / "splits.json")
    with pytest.raises(ValueError, match="subject 'p1' is in train and test"):
        Splits(_splits(tmp_path, {"c": {"test": ["p1"], "folds": [{"train": ["p1"], "val": []}]}}))
    with pytest.raises(ValueError, match="has 1 folds of train/val, fold 3 asked"):
        Splits(_splits(tmp_path, {"c": {"test": [], "folds": [{"train": ["p1"], "val": []}]}}), fold=3)


def test_a_center_missing_from_the_file_and_a_list_without_a_file_are_errors(tmp_path):
    _acdc_release(tmp_path / "acdc", info=False)
    every = DataSource("acdc", str(tmp_path / "acdc"), "acdc", "dijon", "bSSFP")
    with pytest.raises(ValueError, match="center 'dijon' is not in splits file"):
        Manifest.from_sources([every], Splits(_splits(tmp_path, {"other": {"test": []}})))
    with pytest.raises(ValueError, match="needs a splits file"):
        Manifest.from_sources([every])


def test_the_shipped_real_splits_keep_each_subject_in_one_split():
    splits = Splits("experiments/splits/real_samples.json")
    assert set(splits.subjects) == {"la_real", "myops_real", "acdc_real"}
    counts = {center: sorted(list(s.values()).count(k) for k in ("train", "val", "test"))
              for center, s in splits.subjects.items()}
    assert counts == {"la_real": [4, 4, 16], "myops_real": [5, 5, 20], "acdc_real": [2, 5, 8]}


def test_an_unseen_center_that_no_source_has_is_refused(tmp_path):
    from datamodules.datamodule import CareDataModule

    source = DataSource("acdc", str(tmp_path), "acdc", "dijon", "bSSFP", "test")
    with pytest.raises(ValueError, match=r"unseen_centers \['dijonn'\] are no source's center"):
        CareDataModule([source], unseen_centers=["dijonn"])
