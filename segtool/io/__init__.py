"""Reading and writing images as Volumes (array + affine + header).

CONTRACT (the rest of segtool relies on it):
- ``Volume.array`` is channels-first: ``(C, *spatial)``; spatial is (x, y, z) for 3D
  images in voxel order, (rows, cols) for 2D photos.
- ``Volume.affine`` is the 4x4 voxel-to-RAS+ (mm) matrix; photos get the identity.
- ``Volume.header`` keeps what the writer needs to reproduce the input's header
  (nibabel header for NIfTI/Analyze; None otherwise).

Formats
-------
Read: NIfTI (``.nii``, ``.nii.gz``), Analyze / NIfTI pairs (``.hdr``/``.img``),
DICOM (a series directory or a single file), MetaImage and NRRD (``.mha``, ``.mhd``,
``.nrrd``, ``.nhdr``) and 2D photos (``.png``, ``.jpg``, ``.jpeg``, ``.tif``,
``.tiff``).  A file with another suffix is identified by content (DICOM, NIfTI
magic, anything Pillow recognises).

Written: label maps and probability maps (see :func:`write_labels` and
:func:`write_probabilities`).  Every write is atomic: into a hidden temporary
directory beside the output, then moved into place (see :mod:`segtool.io.atomic`).

Heavy libraries (nibabel, SimpleITK, pydicom, Pillow) are imported lazily inside
the functions that need them, and the names below are imported on first use, so
``import segtool.io`` (and ``segtool.io.atomic`` or ``segtool.io.formats``) stays cheap.

Layout
------
- :mod:`~segtool.io.volume`: the :class:`Volume` dataclass.
- :mod:`~segtool.io.formats`: file naming: suffix tables, suffix and stem of a path, photo
  detection, format and default name of an output.
- :mod:`~segtool.io.messages`: one-line error texts.
- :mod:`~segtool.io.readers`: ``read_volume``/``read_labels``, dispatch, sniffing, array checks.
- :mod:`~segtool.io.nifti`, :mod:`~segtool.io.itk`, :mod:`~segtool.io.photos`: one
  module per library (nibabel, SimpleITK, Pillow), reading and writing its formats.
- :mod:`~segtool.io.channels`: ``read_channels`` (dimensionality, count and grid checks),
  ``channel_count`` (a file's channels from its header).
- :mod:`~segtool.io.dtypes`: smallest integer storage type for label maps.
- :mod:`~segtool.io.atomic`: atomic writes (every temporary-name-and-rename in segtool) and
  refusals to overwrite.
- :mod:`~segtool.io.writers`: ``write_labels`` and ``write_probabilities``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ANALYZE_SUFFIXES": "segtool.io.formats",
    "DICOM_SUFFIXES": "segtool.io.formats",
    "GRID_ATOL": "segtool.io.volume",
    "NIFTI_SUFFIXES": "segtool.io.formats",
    "PHOTO_OUT_SUFFIXES": "segtool.io.formats",
    "PHOTO_SUFFIXES": "segtool.io.formats",
    "SITK_SUFFIXES": "segtool.io.formats",
    "Volume": "segtool.io.volume",
    "channel_count": "segtool.io.channels",
    "default_output_path": "segtool.io.formats",
    "ras_affine_to_sitk": "segtool.io.itk",
    "read_channels": "segtool.io.channels",
    "read_labels": "segtool.io.readers",
    "read_volume": "segtool.io.readers",
    "sitk_to_ras_affine": "segtool.io.itk",
    "write_labels": "segtool.io.writers",
    "write_probabilities": "segtool.io.writers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segtool.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
