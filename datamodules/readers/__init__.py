"""One small reader per on-disk layout. Adding a dataset = reuse or write a reader + a YAML entry."""

from __future__ import annotations

from collections.abc import Callable

from datamodules.case import Case, DataSource
from datamodules.readers.lascarqs import read_lascarqs
from datamodules.readers.mmwhs import read_mmwhs
from datamodules.readers.myops import read_myops

READERS: dict[str, Callable[[DataSource], list[Case]]] = {
    "lascarqs": read_lascarqs,
    "mmwhs": read_mmwhs,
    "myops": read_myops,
}


def read_source(source: DataSource) -> list[Case]:
    """Cases of one source; raises ``ValueError`` naming the source when it cannot be read."""
    if source.layout not in READERS:
        raise ValueError(f"source {source.root!r}: unknown layout {source.layout!r}; known: {sorted(READERS)}")
    return READERS[source.layout](source)
