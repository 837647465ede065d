"""One small reader per on-disk layout. Adding a dataset = reuse or write a reader + a YAML entry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import vocabulary
from datamodules.case import Case, DataSource
from datamodules.readers import acdc, lascarqs, mmwhs, myops
from datamodules.readers.acdc import read_acdc
from datamodules.readers.lascarqs import read_lascarqs
from datamodules.readers.listing import read_listing
from datamodules.readers.mmwhs import read_mmwhs
from datamodules.readers.myops import read_myops

READERS: dict[str, Callable[[DataSource], list[Case]]] = {
    "lascarqs": read_lascarqs,
    "mmwhs": read_mmwhs,
    "myops": read_myops,
    "acdc": read_acdc,
    "manifest": read_listing,
}

# Where each layout keeps a case's label file, relative to the release folder: exported
# predictions use the same names, so ``evaluate`` can pair them with a release's references.
LABEL_FILES: dict[str, Callable[[str], str]] = {
    "lascarqs": lambda case_id: f"{case_id}/{lascarqs.LABEL_NAME}",
    "mmwhs": lambda case_id: f"{case_id}{mmwhs.LABEL_SUFFIX}",
    "myops": lambda case_id: f"{case_id}{myops.LABEL_SUFFIX}",
    "acdc": acdc.label_file,
}


def read_source(source: DataSource) -> list[Case]:
    """Cases of one source (only ``source.cases`` when given); raises ``ValueError`` naming the
    source when it cannot be read."""
    if source.layout not in READERS:
        raise ValueError(f"source {source.root!r}: unknown layout {source.layout!r}; known: {sorted(READERS)}")
    try:
        vocabulary.modality(source.modality)
    except ValueError as err:
        raise ValueError(f"source {source.root!r} ({source.task}/{source.center}/{source.split}): {err}") from None
    if source.layout != "manifest" and (source.file is not None or source.label_layout is not None):
        raise ValueError(f"source {source.root!r}: 'file' and 'label_layout' apply to layout 'manifest' only")
    if not source.weight > 0:
        raise ValueError(f"source {source.root!r} ({source.task}/{source.center}/{source.modality}): weight must be "
                         f"positive, got {source.weight}")
    cases = READERS[source.layout](source)
    if source.structures is not None:
        trained = vocabulary.TASKS[source.task].trained_structures
        unknown = [key for key in source.structures if key not in trained]
        if unknown or not source.structures:
            raise ValueError(f"source {source.root!r} ({source.task}/{source.center}/{source.modality}): structures "
                             f"{list(source.structures)} must be a non-empty subset of task {source.task!r}'s {list(trained)}")
        cases = [dataclasses.replace(case, structures=tuple(source.structures)) for case in cases]
    if source.cases is None:
        return cases
    by_id: dict[str, list[Case]] = {}
    for case in cases:  # a case by its id, and every case of a subject by the subject
        by_id.setdefault(case.case_id, []).append(case)
        if case.subject not in (None, case.case_id):
            by_id.setdefault(case.subject, []).append(case)
    unknown = [case_id for case_id in source.cases if case_id not in by_id]
    if unknown:
        raise ValueError(f"source {source.root!r} ({source.task}/{source.center}/{source.split}): cases {unknown} "
                         f"not found; it holds {sorted(by_id)[:8]}{'...' if len(by_id) > 8 else ''}")
    return list({case.uid: case for case_id in source.cases for case in by_id[case_id]}.values())
