"""The experiments shipped with the package, and the files they name (splits files): found on disk
where a path names one, else among the shipped ones, so a non-editable install runs them from any
folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_experiments() -> Path:
    """The folder of the experiments installed with the package (``experiments/`` of a checkout)."""
    return Path(str(resources.files("experiments")))


def experiment_file(name: str, default_suffix: str = "") -> Path:
    """``name`` as a file: itself where it exists, else the shipped file it names (``phantoms.yaml``,
    ``experiments/phantoms.yaml``, ``splits/real_samples.json``; ``default_suffix`` added to a name
    without one) where that exists, else ``name``: a missing file is reported by its reader, by its name."""
    path = Path(name).expanduser()
    if path.is_file() or path.is_absolute():
        return path
    relative = Path(*[part for part in path.parts if part not in ("experiments", ".")])
    if default_suffix and not relative.suffix:
        relative = relative.with_suffix(default_suffix)
    candidate = shipped_experiments() / relative
    return candidate if candidate.is_file() else path
