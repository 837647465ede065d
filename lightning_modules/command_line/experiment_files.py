"""Experiment YAML files: found on disk or among the experiments shipped with the package, and
each overlay preceded by the base experiment it names.

An overlay starts with ``base: <file>`` (beside the overlay, else a shipped experiment) and holds
only what differs;
``--config overlay.yaml`` reads as ``--config <its base> --config overlay.yaml``, so later
files and command-line overrides still win, as they do for any ``--config`` list. jsonargparse
has no include mechanism for this, hence the small expansion here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from experiments import experiment_file


def experiment_path(name: str) -> Path:
    """``name`` as a file: itself where it exists, else the shipped experiment it names
    (``phantoms``, ``phantoms.yaml``, ``experiments/phantoms.yaml``, ``backbones/swinunetr.yaml``),
    so a non-editable install runs the shipped experiments from any folder."""
    return experiment_file(name, ".yaml")


def with_bases(path: Path, seen: tuple[Path, ...] = ()) -> list[Path]:
    """``path`` preceded by its base, its base's base, and so on (outermost first)."""
    resolved = path.resolve()
    if resolved in seen:
        raise ValueError(f"experiment {path} names itself as a base, through {' -> '.join(map(str, seen))}")
    node = yaml.safe_load(path.read_text()) if path.is_file() else None
    base = node.get("base") if isinstance(node, dict) else None
    if base is None:
        return [path]
    # beside the overlay first, else a shipped experiment: a user's own file anywhere can overlay base.yaml
    base_path = path.parent / base if (path.parent / base).is_file() else experiment_path(str(base))
    if not base_path.is_file():
        raise ValueError(f"{path}: its base {base!r} is neither beside it nor a shipped experiment")
    return with_bases(base_path, (*seen, resolved)) + [path]


def expand_configs(words: list[str]) -> list[str]:
    """Command-line words with each ``--config NAME`` resolved (``experiment_path``) and preceded
    by its bases (``with_bases``)."""
    out: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--config" and index + 1 < len(words):
            name, index = words[index + 1], index + 2
        elif word.startswith("--config="):
            name, index = word.split("=", 1)[1], index + 1
        else:
            out.append(word)
            index += 1
            continue
        for path in with_bases(experiment_path(name)):
            out += ["--config", str(path)]
    return out
