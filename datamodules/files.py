"""File conventions every room shares: what a NIfTI file name looks like, and writing a file so
that a crash never leaves a half-written one under a valid name."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

# a NIfTI image or label file, compressed or not
NIFTI_NAME = re.compile(r"\.nii(\.gz)?$")


def nifti_stem(path: Path) -> str:
    """A NIfTI file's name without ``.nii`` / ``.nii.gz``."""
    return NIFTI_NAME.sub("", path.name)


def write_atomic(path: str | os.PathLike, write: Callable, binary: bool = False) -> Path:
    """Call ``write(stream)`` on a temporary file in ``path``'s folder, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb" if binary else "w", **({} if binary else {"newline": ""})) as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
