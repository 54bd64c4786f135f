"""Writing label maps and probability maps on a reference Volume's grid (format from the suffix)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from segtool.errors import GeometryError, UsageError
from segtool.io.atomic import InputIndex, atomic_write
from segtool.io.formats import NIFTI_SUFFIXES, output_format, split_suffix
from segtool.io.itk import write_sitk_labels
from segtool.io.messages import shape_text
from segtool.io.nifti import write_analyze_labels, write_nifti, write_nifti_labels
from segtool.io.photos import write_photo_labels
from segtool.io.volume import Volume


def write_labels(
    labels: np.ndarray,
    reference: Volume,
    out_path: str | os.PathLike,
    overwrite: bool = False,
    protect: "InputIndex | Sequence[str | os.PathLike]" = (),
    label_names: Mapping[int, str] | None = None,
    algorithm: str = "segtool",
    palette: Mapping[int, tuple[int, int, int]] | None = None,
) -> Path:
    """Write an integer label map on ``reference``'s grid; returns the path written.

    ``labels`` has the reference's spatial shape.  The format comes from the suffix:

    - ``.nii``/``.nii.gz``: nibabel, with the reference's exact affine; a NIfTI
      reference's header is copied (qform/sform codes, pixdim, units); otherwise
      a fresh header with the RAS affine as qform and sform, code 1 (scanner).
    - ``.hdr``/``.img``: an Analyze pair for an Analyze reference (its header class
      and header copied); a NIfTI pair otherwise, which keeps the full affine.
    - ``.png``/``.tif``/``.tiff``: Pillow, 2D labels only, mode ``L`` when every
      label fits in 8 bits, else ``I;16``.  JPEG is refused (lossy).  Non-photo
      2D references (e.g. a 2D NIfTI, spatial (x, y)) are written with rows = y,
      as ITK writes 2D images; no geometry is kept.  With ``palette`` (label value
      -> RGB, e.g. the task's class colours) an 8-bit mask is an indexed (mode
      ``P``) image: pixel values are still the labels, viewers show the colours.
    - ``.dcm``/``.dicom``: a DICOM SEG (highdicom, :mod:`segtool.io.dicom_seg`) that
      references the reference's DICOM series, one segment per entry of
      ``label_names`` (``algorithm`` names the producer); DICOM series inputs only.
    - ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``: SimpleITK, with
      the affine converted to LPS origin/spacing/direction; compressed.

    The stored type is uint8 when labels fit, else uint16 (int16/int32 for Analyze,
    which lacks uint16), with scl_slope/inter 1/0.  Refuses (OutputExistsError) to
    write onto any input of the reference even with ``overwrite``, and onto an
    existing file without ``overwrite``; nor onto any path in ``protect`` (the other
    inputs of the same call, as paths or one `segtool.io.atomic.InputIndex` built for
    the whole call).  Atomic (see :mod:`segtool.io.atomic`).
    """
    out = Path(out_path).expanduser()
    data = _label_array(labels, reference)
    fmt = output_format(out)
    if fmt == "photo":
        _check_photo_output(out, data)
    if fmt == "dicom-seg":
        from segtool.io.dicom_seg import write_dicom_seg

        def write(tmp: Path) -> None:
            write_dicom_seg(data, reference, tmp, label_names, algorithm, shown_as=out)
    elif fmt == "photo" and palette:
        def write(tmp: Path) -> None:
            write_photo_labels(data, reference, tmp, palette)
    else:
        def write(tmp: Path) -> None:
            _LABEL_WRITERS[fmt](data, reference, tmp)
    return atomic_write(out, reference, overwrite, write, protect)


def write_probabilities(
    probs: np.ndarray,
    reference: Volume,
    out_path: str | os.PathLike,
    overwrite: bool = False,
    protect: "InputIndex | Sequence[str | os.PathLike]" = (),
) -> Path:
    """Write float32 class probabilities ``(C, *spatial)`` as a 4D NIfTI ``(x, y, z, C)``.

    The reference's affine (and NIfTI header, datatype set to float32) is used.  2D
    references (photos included) also give a NIfTI: ``(rows, cols, 1, C)`` with the
    reference's affine (the identity for photos).  Only ``.nii``/``.nii.gz`` are
    accepted.  Same refusal and atomicity rules as :func:`write_labels`.
    """
    out = Path(out_path).expanduser()
    if split_suffix(out.name)[1].lower() not in NIFTI_SUFFIXES:
        raise UsageError(f"{out}: probability maps are written as NIfTI, use a .nii.gz or .nii name")
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != reference.ndim + 1 or probs.shape[1:] != reference.spatial_shape:
        raise GeometryError(
            f"{out}: probabilities of shape {shape_text(probs.shape)} do not match the reference grid "
            f"{shape_text(reference.spatial_shape)} (expected C x grid)"
        )
    data = np.moveaxis(probs, 0, -1)
    if reference.ndim == 2:
        data = data[:, :, None, :]
    return atomic_write(
        out, reference, overwrite, lambda tmp: write_nifti(data, reference, tmp, np.float32), protect
    )


def _label_array(labels: np.ndarray, reference: Volume) -> np.ndarray:
    """Check shape and integrality; returns an integer array."""
    data = np.asarray(labels)
    if data.shape != reference.spatial_shape:
        raise GeometryError(
            f"label map of shape {shape_text(data.shape)} does not match the reference grid "
            f"{shape_text(reference.spatial_shape)} ({reference.path})"
        )
    if data.dtype == bool:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.isfinite(data).all() or not np.array_equal(data, np.rint(data)):
            raise ValueError("labels must be integers")
        data = data.astype(np.int64)
    return data


def _check_photo_output(out: Path, data: np.ndarray) -> None:
    if data.ndim != 2:
        raise UsageError(f"{out}: a {data.ndim}D label map cannot be written as {out.suffix}, use .nii.gz")


_LABEL_WRITERS: dict[str, Callable[[np.ndarray, Volume, Path], None]] = {
    "nifti": write_nifti_labels,
    "analyze": write_analyze_labels,
    "sitk": write_sitk_labels,
    "photo": write_photo_labels,
}
