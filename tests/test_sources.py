"""Source options: the explicit case-list layout and the ``cases`` filter."""

import pytest

from datamodules.case import DataSource
from datamodules.manifest import Manifest
from datamodules.readers import read_source


def phantom_myops_folder(phantom_root):
    return phantom_root / "myops" / "myops_c1" / "train"


def test_manifest_layout_reads_a_csv_list_with_relative_paths(phantom_root, tmp_path):
    folder = phantom_myops_folder(phantom_root)
    images = sorted(folder.rglob("*_LGE.nii.gz"))
    lines = ["case_id,image,label"] + [f"p{i},{img},{str(img).replace('_LGE', '_gd')}" for i, img in enumerate(images)]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    source = DataSource("manifest", str(tmp_path), "myops", "private", "LGE", "train", file="list.csv")
    cases = read_source(source)
    assert [c.case_id for c in cases] == [f"p{i}" for i in range(len(images))]
    assert cases[0].layout == "myops" and cases[0].label.endswith("_gd.nii.gz")
    Manifest(cases)  # files exist, layout known


def test_manifest_layout_reads_yaml_and_names_bad_entries(tmp_path):
    (tmp_path / "manifest.yaml").write_text("cases:\n  - {case_id: a, image: a.nii.gz, label: a_seg.nii.gz}\n"
                                            "  - {case_id: b}\n")
    source = DataSource("manifest", str(tmp_path), "whs", "x", "CT", "test")
    with pytest.raises(ValueError, match=r"manifest.yaml: entry 2 lacks \['image'\]"):
        read_source(source)
    (tmp_path / "manifest.yaml").write_text("- {case_id: a, image: a.nii.gz}\n")
    case = read_source(source)[0]
    assert case.layout == "mmwhs" and case.label is None and case.image == str(tmp_path / "a.nii.gz")


def test_manifest_layout_without_a_list_says_what_it_looked_for(tmp_path):
    with pytest.raises(ValueError, match="holds none of"):
        read_source(DataSource("manifest", str(tmp_path), "la", "x", "LGE", "train"))


def test_cases_option_selects_and_orders_cases_and_names_unknown_ids(phantom_root):
    root = str(phantom_myops_folder(phantom_root))
    every = read_source(DataSource("myops", root, "myops", "c1", "LGE", "train"))
    chosen = [every[1].case_id, every[0].case_id]
    picked = read_source(DataSource("myops", root, "myops", "c1", "LGE", "train", cases=chosen))
    assert [c.case_id for c in picked] == chosen
    with pytest.raises(ValueError, match=r"cases \['nope'\] not found"):
        read_source(DataSource("myops", root, "myops", "c1", "LGE", "train", cases=["nope"]))


def test_file_option_is_refused_outside_manifest_layout(phantom_root):
    with pytest.raises(ValueError, match="layout 'manifest' only"):
        read_source(DataSource("myops", str(phantom_myops_folder(phantom_root)), "myops", "c1", "LGE", "train",
                               file="x.csv"))


def test_unseen_sequence_of_a_seen_center_is_ood(phantom_root):
    root = str(phantom_myops_folder(phantom_root))
    cases = read_source(DataSource("myops", root, "myops", "c1", "LGE", "train"))
    train = cases[1:]  # the test patient's other sequence is never trained: one subject, one split
    other = [type(c)(**{**c.__dict__, "modality": "C0", "split": "test", "image": c.label}) for c in cases[:1]]
    manifest = Manifest(train + other)
    assert manifest.role(train[0]) == "ID" and manifest.role(other[0]) == "OOD"
