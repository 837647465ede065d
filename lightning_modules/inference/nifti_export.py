"""Writing arrays as NIfTI files that carry exactly an input image's geometry, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np


def write_like(array: np.ndarray, like: str | os.PathLike, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``array`` to ``path`` with the shape, affine, qform/sform (and their codes) and
    voxel sizes of the image file ``like``.

    The header is the input's own, so nothing of its geometry is recomputed (nibabel would
    otherwise give a qform-only file an sform code of 2); its intensity scaling is reset, so
    label codes are stored as they are. The file appears complete or not at all: it is
    written next to its destination and renamed.

    Args:
        array: spatial data ``[*S]`` (or ``[*S, N]`` for several maps), ``S`` the input's shape.
        like: image whose geometry the output takes.
        path: destination (``.nii`` or ``.nii.gz``); its folder is created.
        overwrite: replace an existing file; otherwise an existing file is an error.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite to replace it")
    source = nib.load(str(like))
    if tuple(array.shape[:3]) != tuple(source.shape[:3]):
        raise ValueError(f"array of shape {array.shape} does not fit {like} of shape {source.shape}")
    header = source.header.copy()
    header.set_data_dtype(array.dtype)
    header.set_data_shape(array.shape)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0, 0
    image = type(source)(array, source.affine, header)
    image.set_qform(source.header.get_qform(), code=int(source.header["qform_code"]))
    image.set_sform(source.header.get_sform(), code=int(source.header["sform_code"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        nib.save(image, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
