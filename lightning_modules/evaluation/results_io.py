"""Writing result tables: atomically, so a crash never leaves a half-written CSV."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from datamodules.files import write_atomic


def unused_path(path: str | os.PathLike) -> Path:
    """``path`` if nothing is there yet, else the first free ``<stem>-1<suffix>``,
    ``<stem>-2<suffix>``...: a rerun into the same folder adds a file instead of replacing one."""
    path = candidate = Path(path)
    number = 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def write_csv_atomic(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` to ``path`` through a temporary file in the same folder and a rename."""
    return write_atomic(path, lambda stream: frame.to_csv(stream, index=False, float_format="%.6g"))


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda stream: stream.write(text))
