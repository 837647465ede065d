"""``layout: manifest``: cases listed explicitly in a CSV or YAML file, for any folder layout.

Columns (CSV header or YAML keys): ``case_id``, ``image``, and ``label`` (empty or missing for
unlabelled cases). Relative paths are relative to the list file's folder. Which label codes the
files use comes from the source's ``label_layout`` (default: the task's own challenge release).
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

import vocabulary
from datamodules.case import Case, DataSource
from datamodules.readers.pairs import existing_root

DEFAULT_FILES = ("manifest.csv", "manifest.yaml", "manifest.yml")
COLUMNS = ("case_id", "image")


def _list_file(source: DataSource) -> Path:
    root = existing_root(source)
    if source.file is not None:
        path = root / source.file
        if not path.is_file():
            raise ValueError(f"source {source.task}/{source.center}: case list {str(path)!r} does not exist")
        return path
    for name in DEFAULT_FILES:
        if (root / name).is_file():
            return root / name
    raise ValueError(f"source root {str(root)!r} (manifest layout) holds none of {list(DEFAULT_FILES)}; "
                     f"name the list with 'file:'")


def _rows(path: Path) -> list[dict]:
    try:
        if path.suffix == ".csv":
            with path.open(newline="") as stream:
                return list(csv.DictReader(stream))
        loaded = yaml.safe_load(path.read_text())
    except (OSError, csv.Error, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"case list {str(path)!r} is unreadable: {err}") from err
    if isinstance(loaded, dict):
        loaded = loaded.get("cases")
    if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
        raise ValueError(f"case list {str(path)!r} must be a list of mappings (or 'cases:' holding one)")
    return loaded


def read_listing(source: DataSource) -> list[Case]:
    path = _list_file(source)
    known_task = vocabulary.TASKS.get(source.task)
    label_layout = source.label_layout or (known_task.layout if known_task else None)
    if label_layout is None:
        raise ValueError(f"case list {str(path)!r}: no label_layout given and task {source.task!r} has no default")
    rows = _rows(path)
    if not rows:
        raise ValueError(f"case list {str(path)!r} lists no cases")
    problems, cases = [], []
    for number, row in enumerate(rows, start=1):
        missing = [c for c in COLUMNS if not str(row.get(c) or "").strip()]
        if missing:
            problems.append(f"{path}: entry {number} lacks {missing}")
            continue
        label = str(row.get("label") or "").strip() or None
        cases.append(Case(case_id=str(row["case_id"]).strip(), task=source.task, center=source.center,
                          modality=source.modality, layout=label_layout,
                          image=str((path.parent / str(row["image"]).strip()).resolve()),
                          label=None if label is None else str((path.parent / label).resolve()),
                          split=source.split, weight=source.weight))
    if problems:
        raise ValueError("; ".join(problems))
    return cases
