"""An experiment's splits file: which subjects of each center train, validate and test.

nnU-Net keeps its cross-validation folds in ``splits_final.json`` (a list of ``{"train": [...],
"val": [...]}``); this is that list per center, with the center's test subjects beside it, so a
fold changes training and validation while test stays put::

    {"acdc_real": {"test": ["patient019", ...],
                   "folds": [{"train": ["patient001", ...], "val": ["patient011", ...]}]},
     "myops_real": {...}}

Subjects, not images: both ACDC frames of a patient and every MyoPS sequence of a patient follow
their subject (``Case.person``), so one heart never sits on both sides of a split. Fixed before
anyone looks at test: change it and every figure measured on it is void.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from datamodules.case import SPLITS, Case
from experiments import experiment_file


class Splits:
    """The subjects of each center per split, for one fold.

    Args:
        path: the JSON file (see the module docstring).
        fold: which of each center's ``folds`` gives train and val.

    Raises:
        ValueError: naming the file and the problem (unreadable, a subject in two splits, a
            fold a center does not have, an unknown key).
    """

    def __init__(self, path: str | Path, fold: int = 0):
        self.path = experiment_file(str(path))  # beside the experiments: a shipped one from any folder
        try:
            table = json.loads(self.path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"splits file {str(self.path)!r} is unreadable: {err}") from err
        if not isinstance(table, dict):
            raise ValueError(f"splits file {str(self.path)!r} must map each center to its splits")
        self.fold = fold
        self.subjects: dict[str, dict[str, str]] = {}  # center -> subject -> split
        for center, entry in table.items():
            where = f"splits file {str(self.path)!r}, center {center!r}"
            if not isinstance(entry, dict) or set(entry) - {"test", "folds"}:
                raise ValueError(f"{where}: write {{'test': [...], 'folds': [{{'train': [...], 'val': [...]}}]}}")
            folds = entry.get("folds", [])
            if not 0 <= fold < max(len(folds), 1) or (folds and set(folds[fold]) - {"train", "val"}):
                raise ValueError(f"{where}: has {len(folds)} folds of train/val, fold {fold} asked")
            chosen = {"test": entry.get("test", []), **(folds[fold] if folds else {})}
            seen: dict[str, str] = {}
            for split in SPLITS:
                for subject in chosen.get(split, []):
                    if subject in seen:
                        raise ValueError(f"{where}: subject {subject!r} is in {seen[subject]} and {split}")
                    seen[subject] = split
            self.subjects[center] = seen

    def assign(self, cases: list[Case], keep: list[str] | None, source: str) -> list[Case]:
        """``cases`` (of one source, ``source`` naming it in errors) with the split of their subject;
        only the splits in ``keep`` (all when ``None``). A subject the file does not list takes
        part in no split, as in nnU-Net; a center the file does not list is an error."""
        kept = []
        for case in cases:
            if case.center not in self.subjects:
                raise ValueError(f"source {source}: center {case.center!r} is not in splits file {str(self.path)!r} "
                                 f"(it lists {sorted(self.subjects)})")
            split = self.subjects[case.center].get(case.person)
            if split is not None and (keep is None or split in keep):
                kept.append(replace(case, split=split))
        return kept
