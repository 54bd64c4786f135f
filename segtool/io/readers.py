"""Reading one image: ``read_volume``/``read_labels``, format dispatch and sniffing, array checks.

The per-format readers live in :mod:`~segtool.io.nifti` (NIfTI, Analyze),
:mod:`~segtool.io.itk` (MetaImage, NRRD, DICOM) and :mod:`~segtool.io.photos`
(Pillow); here the right one is picked and its array validated (zero size,
complex, NaN/inf) and converted (float32 images, int32 labels).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

import numpy as np

from segtool.errors import ImageReadError
from segtool.io.formats import (
    ANALYZE_SUFFIXES,
    DICOM_SUFFIXES,
    NIFTI_SUFFIXES,
    PHOTO_SUFFIXES,
    SITK_SUFFIXES,
    analyze_companions,
    split_suffix,
)
from segtool.io.dicom_series import describe_mode
from segtool.io.itk import detached_data_files, read_dicom_dir, read_dicom_file, read_sitk
from segtool.io.messages import exception_text, shape_text
from segtool.io.nifti import read_analyze, read_nifti
from segtool.io.photos import read_photo
from segtool.io.volume import Volume


def read_volume(path: str | os.PathLike, allow_uneven: bool = False) -> Volume:
    """Read one image file (or DICOM series directory) as a float32 :class:`Volume`.

    Raises :class:`ImageReadError` (one-line message naming the file) for a missing
    file, an unknown or unreadable format, a corrupt or truncated file, a zero-size
    image, or NaN/inf voxels.  4D images are returned with a 4D spatial array (the
    extra sizes are in ``meta['extra_dims']``) so that :func:`read_channels` can
    refuse them with a clear message.  Anything that is not a regular file or a
    directory (a FIFO, ``/dev/zero``...) is refused before it is opened, and so is an
    image whose affine is degenerate (zero sform and qform).  A DICOM series with
    missing slices or uneven spacing is refused unless ``allow_uneven``, which
    resamples it onto an even grid (``meta['warnings']`` says so).
    """
    return _read(Path(path).expanduser(), labels=False, allow_uneven=allow_uneven)


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
        raise ImageReadError(f"{p}: a label image must be 2D or 3D, got shape {shape_text(vol.spatial_shape)}")
    return vol


def _read(p: Path, labels: bool, allow_uneven: bool = False) -> Volume:
    """Dispatch on the path, then validate and convert the array."""
    if _check_regular(p) == "dir":
        vol = read_dicom_dir(p, labels, allow_uneven)
    else:
        for companion in _companion_files(p):
            if os.path.lexists(companion):
                _check_regular(companion)
        vol = _reader_for(p)(p, labels)
    vol.meta.setdefault("input_paths", [p])
    vol.array = _finish_array(p, vol.array, labels)
    _check_affine(p, vol)
    return vol


def _check_regular(p: Path) -> str:
    """'file' or 'dir'; refuses a missing path and anything else (FIFO, device, socket) unopened."""
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file or directory") from None
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot access ({exception_text(exc)})") from exc
    if stat.S_ISDIR(mode):
        return "dir"
    if not stat.S_ISREG(mode):
        raise ImageReadError(f"{p}: is {describe_mode(mode)}, not an image file; refusing to read it")
    return "file"


def _companion_files(p: Path) -> list[Path]:
    """Files a reader will open besides ``p``: the other half of an Analyze pair, a detached data file."""
    return analyze_companions(p) + detached_data_files(p)


def _check_affine(p: Path, vol: Volume) -> None:
    """Refuse a non-finite or singular affine (e.g. a NIfTI whose sform and qform are zero)."""
    rot = np.asarray(vol.affine, dtype=float)[:3, :3]
    if not np.isfinite(vol.affine).all():
        raise ImageReadError(f"{p}: the image's affine (voxel-to-world matrix) holds NaN/inf values")
    n = min(vol.ndim, 3)
    if np.linalg.matrix_rank(rot[:, :n], tol=1e-9) < n or (n == 3 and abs(float(np.linalg.det(rot))) < 1e-12):
        raise ImageReadError(
            f"{p}: the image's affine (voxel-to-world matrix) is degenerate (zero sform and qform, or zero "
            "voxel sizes); fix the header"
        )


def _reader_for(p: Path) -> Callable[[Path, bool], Volume]:
    """The reader for a file, from its suffix or, failing that, its content."""
    suffix = split_suffix(p.name)[1].lower()
    if suffix in NIFTI_SUFFIXES:
        return read_nifti
    if suffix in ANALYZE_SUFFIXES:
        return read_analyze
    if suffix in SITK_SUFFIXES:
        return read_sitk
    if suffix in DICOM_SUFFIXES:
        return read_dicom_file
    if suffix in PHOTO_SUFFIXES:
        return read_photo
    return _sniff(p)


def _sniff(p: Path) -> Callable[[Path, bool], Volume]:
    """Identify a file with an unknown suffix by its content."""
    if _is_dicom(p):
        return read_dicom_file
    if _has_nifti_magic(p):
        return read_nifti
    if _pillow_can_open(p):
        return read_photo
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


#: How far a float label may sit from a whole number and still be read as it (float32 storage noise).
LABEL_ROUNDING_TOLERANCE = 1e-3


def _all_finite(array: np.ndarray, chunk: int = 1 << 22) -> bool:
    """``np.isfinite(array).all()``, a few million values at a time (no whole-image boolean map)."""
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        return bool(np.isfinite(array).all())
    flat = array.ravel(order="K")  # a view of a contiguous array
    return all(bool(np.isfinite(flat[start : start + chunk]).all()) for start in range(0, flat.size, chunk))


def _finish_array(p: Path, array: np.ndarray, labels: bool) -> np.ndarray:
    """Check size and finiteness; float32 for images, rounded int32 for labels."""
    if array.size == 0:
        raise ImageReadError(f"{p}: image has zero size (shape {shape_text(array.shape[1:])})")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ImageReadError(f"{p}: complex-valued images are not supported")
    if np.issubdtype(array.dtype, np.floating) and not _all_finite(array):
        raise ImageReadError(f"{p}: image contains NaN/inf values")
    if labels:
        if np.issubdtype(array.dtype, np.floating):
            rounded = np.rint(array)
            off = np.abs(array - rounded) > LABEL_ROUNDING_TOLERANCE  # storage noise (0.9999) rounds; 0.6 does not
            if off.any():
                example = float(array[off].flat[0])
                raise ImageReadError(
                    f"{p}: label image holds non-integer values (e.g. {example:g} at {int(off.sum())} voxels); "
                    "labels must be whole numbers"
                )
            array = rounded
        if array.size and (array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max):
            raise ImageReadError(f"{p}: label values {array.min()}..{array.max()} do not fit 32-bit integers")
        # int32 in the stored memory order: a NIfTI's column-major labels are not transposed into a
        # C-order copy (1-2 s at 512x512x300, most of `segtool evaluate`'s time); values are identical
        return array.astype(np.int32, order="K", copy=False)
    return np.ascontiguousarray(array, dtype=np.float32)
