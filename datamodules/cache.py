"""On-disk cache of preprocessed volumes, so a second run skips resampling and normalisation.

Neither MONAI's ``PersistentDataset`` nor TorchIO has what this needs: MONAI keys entries by a
hash of the input *dictionary* (file paths), so an edited image with the same path is served
stale, and it trusts whatever ``torch.load`` returns. Here the key covers each file's size and
modification time plus every preprocessing setting, and every entry carries a checksum of its
arrays: a stale key is simply never asked for, and a corrupt or foreign entry is detected,
reported and rebuilt, never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from datamodules.case import Case
from datamodules.files import write_atomic
from datamodules.preprocessing import PreprocessedCase

log = logging.getLogger(__name__)

# bump when the preprocessing code changes what it writes, so old entries stop matching
CACHE_FORMAT = 1
# bump when the data check reports more (2: foreground intensity statistics; 3: gzip CRC verified),
# so each file is read once more instead of its report lacking the new fields or checks
CHECK_FORMAT = 3


def file_fingerprint(path: str | None) -> dict | None:
    """What identifies a file's content cheaply: resolved path, size and mtime in ns."""
    if path is None:
        return None
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _digest(identity: dict) -> str:
    """Cache-entry name of an identity (files + settings)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _checksum(arrays: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(arrays[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


class PreprocessingCache:
    """A folder of preprocessed cases, one ``.pt`` file per (files, settings) key.

    Entries hold tensors and plain values only, so they load with ``weights_only=True``
    (no arbitrary unpickling). Writes go to a temporary file renamed into place, so an
    interrupted run never leaves a half-written entry under a valid name.

    Args:
        root: cache folder (created when missing).
        settings: everything besides the files that changes the result (preprocessing options).
    """

    def __init__(self, root: str | os.PathLike, settings: dict):
        self.root = Path(root).expanduser()
        self.settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
        self.hits = 0
        self.misses = 0

    def key(self, case: Case) -> tuple[str, dict]:
        identity = {"format": CACHE_FORMAT, "settings": self.settings, "modality": case.modality,
                    "task": case.task, "image": file_fingerprint(case.image), "label": file_fingerprint(case.label)}
        return _digest(identity), identity

    def path(self, case: Case) -> Path:
        return self.root / f"{self.key(case)[0]}.pt"

    def load_or_build(self, case: Case, role: str, build: Callable[[Case, str], PreprocessedCase]) -> PreprocessedCase:
        """The cached preprocessing of ``case``, or ``build(case, role)`` stored for next time."""
        key, identity = self.key(case)
        path = self.root / f"{key}.pt"
        if path.exists():
            cached = self._read(path, identity)
            if cached is not None:
                self.hits += 1
                return self._to_case(cached, case, role)
        self.misses += 1
        prepared = build(case, role)
        self._write(path, identity, prepared)
        return prepared

    def _read(self, path: Path, identity: dict) -> dict | None:
        try:
            entry = torch.load(path, weights_only=True)
            arrays = entry["arrays"]
            if json.loads(entry["identity"]) != identity:
                raise ValueError("entry was written for other files or settings")
            if _checksum(arrays) != entry["checksum"]:
                raise ValueError("checksum mismatch")
            return entry
        except Exception as err:  # any failure to read means: do not trust, rebuild
            log.warning("cache entry %s is unusable (%s); rebuilding it", path, err)
            return None

    def _write(self, path: Path, identity: dict, prepared: PreprocessedCase) -> None:
        arrays = {
            "image": prepared.image.contiguous(), "label": prepared.label.contiguous(),
            "affine": torch.from_numpy(np.asarray(prepared.affine, dtype=np.float64)),
            "original_affine": torch.from_numpy(np.asarray(prepared.original_affine, dtype=np.float64)),
        }
        entry = {"identity": json.dumps(identity, sort_keys=True), "arrays": arrays, "checksum": _checksum(arrays),
                 "slice_axis": int(prepared.slice_axis), "original_shape": [int(n) for n in prepared.original_shape]}
        write_atomic(path, binary=True, write=lambda stream: torch.save(entry, stream))

    @staticmethod
    def _to_case(entry: dict, case: Case, role: str) -> PreprocessedCase:
        arrays = entry["arrays"]
        return PreprocessedCase(case=case, role=role, image=arrays["image"], label=arrays["label"],
                                affine=arrays["affine"].numpy(), slice_axis=int(entry["slice_axis"]),
                                original_shape=tuple(entry["original_shape"]),
                                original_affine=arrays["original_affine"].numpy())


def preprocessing_settings(preprocessing) -> dict:
    """The settings part of a cache key: every field of the ``Preprocessing`` dataclass."""
    return {"class": type(preprocessing).__qualname__, **dataclasses.asdict(preprocessing)}


class CheckCache:
    """Remembers data-check reports per file fingerprint, so unchanged files are read once.

    Args:
        root: folder of the JSON entries (created when missing).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def load_or_check(self, case: Case, check: Callable[[Case], dict]) -> dict:
        """``check(case)`` as a JSON-able dict, from the cache when the files are unchanged."""
        try:
            identity = {"format": CHECK_FORMAT, "task": case.task, "layout": case.layout,
                        "image": file_fingerprint(case.image), "label": file_fingerprint(case.label)}
        except OSError:
            return check(case)  # a missing file: nothing to key on, and the check reports it
        path = self.root / f"{_digest(identity)}.json"
        if path.exists():
            try:
                entry = json.loads(path.read_text())
                if entry["identity"] == identity:
                    return entry["report"]
            except (ValueError, KeyError, OSError) as err:
                log.warning("check cache entry %s is unusable (%s); checking again", path, err)
        report = check(case)
        if not report["problems"]:  # failing cases are re-checked every time, after the fix
            text = json.dumps({"identity": identity, "report": report}).encode()
            write_atomic(path, binary=True, write=lambda stream: stream.write(text))
        return report
