"""The validated table of all cases of an experiment; ID/OOD roles derive from it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

import vocabulary
from datamodules.case import SPLITS, Case, DataSource
from datamodules.readers import read_source
from datamodules.splits import Splits


class Manifest:
    """Cases of all sources, checked once, with ID/OOD roles.

    A center is in-distribution (ID) for a task and modality when the task has training cases
    from that center in that modality; every other (task, center, modality) seen in val/test is
    out-of-distribution (OOD): an unseen center, or a seen center's unseen sequence (MyoPS C0
    when training on LGE).

    Args:
        cases: case records (from readers).

    Raises:
        ValueError: listing every problem found (unknown task/layout/split, missing files,
            duplicate cases, an image or a subject (the person: ACDC's two frames, MyoPS's
            sequences of one patient) in two splits, a layout that annotates none of
            its task's structures).
    """

    def __init__(self, cases: list[Case]):
        self.cases = list(cases)
        problems = self._problems()
        if problems:
            raise ValueError("invalid data manifest:\n  " + "\n  ".join(problems))
        self._id_keys = {(c.task, c.center, c.modality) for c in self.cases if c.split == "train"}

    @classmethod
    def from_sources(cls, sources: list[DataSource], splits: Splits | None = None,
                     unseen_centers: tuple[str, ...] | list[str] = ()) -> Manifest:
        """The cases of ``sources``, split as each source says or, with ``splits``, as the splits
        file says for their subjects; the train and val cases of ``unseen_centers`` left out
        (a center held out of training and model selection, scored on test alone)."""
        problems, cases = [], []
        for source in sources:
            where = f"{source.root!r} ({source.task}/{source.center}/{source.modality})"
            if splits is None and not isinstance(source.split, str):
                problems.append(f"source {where}: split {source.split!r} needs a splits file (data.splits); "
                                f"without one, name one split")
                continue
            try:
                read = read_source(source)
                if splits is not None:
                    keep = [source.split] if isinstance(source.split, str) else source.split
                    read = splits.assign(read, keep, where)
                cases.extend(c for c in read if not (c.center in unseen_centers and c.split != "test"))
            except ValueError as err:  # collect all sources' problems in one report
                problems.append(str(err))
        if problems:
            raise ValueError("cannot read data sources:\n  " + "\n  ".join(problems))
        return cls(cases)

    def _problems(self) -> list[str]:
        problems: list[str] = []
        seen: dict[str, Case] = {}
        splits_of_image: dict[str, set[str]] = defaultdict(set)
        splits_of_subject: dict[tuple[str, str], set[str]] = defaultdict(set)
        for case in self.cases:
            where = f"case {case.uid} ({case.image})"
            if case.task not in vocabulary.TASKS:
                problems.append(f"{where}: unknown task {case.task!r}")
                continue
            if case.layout not in vocabulary.LAYOUTS:
                problems.append(f"{where}: unknown layout {case.layout!r}")
                continue
            if case.modality not in vocabulary.MODALITIES:
                problems.append(f"{where}: unknown modality {case.modality!r}; known: {sorted(vocabulary.MODALITIES)}")
            if case.split not in SPLITS:
                problems.append(f"{where}: split {case.split!r} is not one of {SPLITS}")
            if not any(vocabulary.annotated(case.layout, vocabulary.TASKS[case.task].structures)):
                problems.append(f"{where}: layout {case.layout!r} annotates none of task {case.task!r}'s structures")
            if not Path(case.image).is_file():
                problems.append(f"{where}: image file is missing")
            if case.label is None:
                problems.append(f"{where}: no label file found for this image")
            elif not Path(case.label).is_file():
                problems.append(f"{where}: label file {case.label} is missing")
            if case.uid in seen:
                problems.append(f"{where}: duplicate of {seen[case.uid].image}")
            seen[case.uid] = case
            splits_of_image[str(Path(case.image).resolve())].add(case.split)
            splits_of_subject[(case.center, case.person)].add(case.split)
        for image, splits in splits_of_image.items():
            if len(splits) > 1:
                problems.append(f"image {image} is used in several splits: {sorted(splits)}")
        for (center, person), splits in splits_of_subject.items():
            if len(splits) > 1:  # the same heart on both sides leaks the answer into validation/test
                problems.append(f"subject {person!r} of center {center!r} is in several splits: {sorted(splits)}")
        if not self.cases:
            problems.append("no cases")
        return problems

    def role(self, case: Case) -> str:
        return "ID" if (case.task, case.center, case.modality) in self._id_keys else "OOD"

    def split(self, split: str) -> list[Case]:
        return [c for c in self.cases if c.split == split]

    def to_frame(self) -> pd.DataFrame:
        rows = [{"uid": c.uid, "case_id": c.case_id, "subject": c.person, "phase": c.phase, "task": c.task,
                 "center": c.center, "modality": c.modality, "layout": c.layout, "split": c.split,
                 "role": self.role(c), "image": c.image, "label": c.label}
                for c in self.cases]
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """Cases per task x center x modality x split, with the pair's ID/OOD role."""
        frame = self.to_frame()
        return (frame.groupby(["task", "center", "modality", "role", "split"]).size()
                .unstack("split", fill_value=0).reset_index())
