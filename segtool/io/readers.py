"""Reading one image: ``read_volume``/``read_labels``, format dispatch and sniffing, array checks.

The per-format readers live in :mod:`~segtool.io.nifti` (NIfTI, Analyze),
:mod:`~segtool.io.itk` (MetaImage, NRRD, DICOM) and :mod:`~segtool.io.photos`
(Pillow); here the right one is picked and its array validated (zero size,
complex, NaN/inf) and converted (float32 images, int32 labels).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from segtool.errors import ImageReadError
from segtool.io.formats import ANALYZE_SUFFIXES, DICOM_SUFFIXES, NIFTI_SUFFIXES, PHOTO_SUFFIXES, SITK_SUFFIXES, _suffix
from segtool.io.itk import _read_dicom_dir, _read_dicom_file, _read_sitk
from segtool.io.messages import _shape_str
from segtool.io.nifti import _read_analyze, _read_nifti
from segtool.io.photos import _read_photo
from segtool.io.volume import Volume


def read_volume(path: str | os.PathLike) -> Volume:
    """Read one image file (or DICOM series directory) as a float32 :class:`Volume`.

    Raises :class:`ImageReadError` (one-line message naming the file) for a missing
    file, an unknown or unreadable format, a corrupt or truncated file, a zero-size
    image, or NaN/inf voxels.  4D images are returned with a 4D spatial array (the
    extra sizes are in ``meta['extra_dims']``) so that :func:`read_channels` can
    refuse them with a clear message.
    """
    return _read(Path(path).expanduser(), labels=False)


def read_labels(path: str | os.PathLike) -> Volume:
    """Read a label image: one channel, integers kept exact (rounded, cast to int32).

    Palette PNGs give their palette indices; a colour image is accepted only when
    its channels are equal.  Used by ``segtool evaluate``.
    """
    p = Path(path).expanduser()
    vol = _read(p, labels=True)
    if vol.channels != 1:
        raise ImageReadError(f"{p}: a label image must have one channel, got {vol.channels}")
    if vol.ndim not in (2, 3):
        raise ImageReadError(f"{p}: a label image must be 2D or 3D, got shape {_shape_str(vol.spatial_shape)}")
    return vol


def _read(p: Path, labels: bool) -> Volume:
    """Dispatch on the path, then validate and convert the array."""
    if not p.exists():
        raise ImageReadError(f"{p}: no such file or directory")
    if p.is_dir():
        vol = _read_dicom_dir(p, labels)
    else:
        vol = _reader_for(p)(p, labels)
    vol.meta.setdefault("input_paths", [p])
    vol.array = _finish_array(p, vol.array, labels)
    return vol


def _reader_for(p: Path) -> Callable[[Path, bool], Volume]:
    """The reader for a file, from its suffix or, failing that, its content."""
    suffix = _suffix(p)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti
    if suffix in ANALYZE_SUFFIXES:
        return _read_analyze
    if suffix in SITK_SUFFIXES:
        return _read_sitk
    if suffix in DICOM_SUFFIXES:
        return _read_dicom_file
    if suffix in PHOTO_SUFFIXES:
        return _read_photo
    return _sniff(p)


def _sniff(p: Path) -> Callable[[Path, bool], Volume]:
    """Identify a file with an unknown suffix by its content."""
    if _is_dicom(p):
        return _read_dicom_file
    if _has_nifti_magic(p):
        return _read_nifti
    if _pillow_can_open(p):
        return _read_photo
    raise ImageReadError(
        f"{p}: not a recognised image (expected NIfTI, Analyze, DICOM, MHA/MHD, NRRD, PNG, JPEG or TIFF)"
    )


def _is_dicom(p: Path) -> bool:
    """True if pydicom can parse the file's header."""
    import pydicom

    try:
        pydicom.dcmread(str(p), stop_before_pixels=True)
    except Exception:
        return False
    return True


def _has_nifti_magic(p: Path) -> bool:
    """True for an uncompressed NIfTI-1/2 single file whatever its name."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(348)
    except OSError:
        return False
    return head[344:348] == b"n+1\0" or head[4:8] == b"n+2\0"


def _pillow_can_open(p: Path) -> bool:
    """True if Pillow identifies the file as an image."""
    from PIL import Image

    try:
        with Image.open(p):
            return True
    except Exception:
        return False


def _finish_array(p: Path, array: np.ndarray, labels: bool) -> np.ndarray:
    """Check size and finiteness; float32 for images, rounded int32 for labels."""
    if array.size == 0:
        raise ImageReadError(f"{p}: image has zero size (shape {_shape_str(array.shape[1:])})")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ImageReadError(f"{p}: complex-valued images are not supported")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ImageReadError(f"{p}: image contains NaN/inf values")
    if labels:
        if np.issubdtype(array.dtype, np.floating):
            array = np.rint(array)
        return np.ascontiguousarray(array, dtype=np.int32)
    return np.ascontiguousarray(array, dtype=np.float32)
