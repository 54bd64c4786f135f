"""SimpleITK: its lazy import, LPS <-> RAS geometry, and MetaImage/NRRD/DICOM reading and writing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from segtool.errors import GeometryError, ImageReadError
from segtool.io.atomic import UnsupportedFormat
from segtool.io.dtypes import NIFTI_LABEL_TYPES, smallest_label_dtype
from segtool.io.formats import split_suffix
from segtool.io.messages import read_error
from segtool.io.volume import Volume


_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sitk():
    """Import SimpleITK lazily, with ITK's stderr warnings silenced (errors still raise)."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def sitk_to_ras_affine(origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """The 4x4 voxel->RAS+ affine of an ITK image (ITK geometry is in LPS+).

    ``direction`` is ITK's row-major flat direction matrix.  2D images get a 3D
    affine with unit spacing along z; for 4D+ images only the first 3 axes count.
    """
    dim = len(spacing)
    n = min(dim, 3)
    rot = np.asarray(direction, dtype=np.float64).reshape(dim, dim)[:n, :n]
    lps = np.eye(4)
    lps[:n, :n] = rot * np.asarray(spacing, dtype=np.float64)[:n]
    lps[:n, 3] = np.asarray(origin, dtype=np.float64)[:n]
    return _LPS_RAS @ lps


def ras_affine_to_sitk(affine: np.ndarray, dim: int) -> tuple[tuple, tuple, tuple]:
    """Inverse of :func:`sitk_to_ras_affine`: (origin, spacing, direction) in LPS for ``dim`` axes."""
    lps = _LPS_RAS @ np.asarray(affine, dtype=np.float64)
    cols = lps[:dim, :dim]
    spacing = np.sqrt((cols**2).sum(axis=0))
    if np.any(spacing <= 0):
        raise GeometryError("affine has a zero-length axis; cannot convert it to ITK geometry")
    direction = cols / spacing
    return tuple(lps[:dim, 3].tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def _volume_from_sitk(img, p: Path, kind: str, meta: dict) -> Volume:
    """Convert a SimpleITK image: (z, y, x[, C]) array -> (C, x, y, z), LPS -> RAS."""
    sitk = _sitk()
    dim = img.GetDimension()
    data = sitk.GetArrayViewFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:
        data = np.moveaxis(data, -1, 0)
    else:
        data = data[None]
    array = np.array(data.transpose([0] + list(range(dim, 0, -1))))
    if array.ndim > 4:
        meta["extra_dims"] = tuple(int(s) for s in array.shape[4:])
    affine = sitk_to_ras_affine(img.GetOrigin(), img.GetSpacing(), img.GetDirection())
    meta.setdefault("input_paths", [p])
    meta["pixel_type"] = img.GetPixelIDTypeAsString()
    return Volume(array, affine, p, kind, None, meta)


def read_sitk(p: Path, labels: bool) -> Volume:
    """MetaImage / NRRD via SimpleITK."""
    sitk = _sitk()
    try:
        img = sitk.ReadImage(str(p))
    except Exception as exc:
        raise read_error(p, "cannot read image, corrupt or truncated?", exc) from exc
    meta = {"input_paths": [p] + detached_data_files(p)}
    return _volume_from_sitk(img, p, "sitk", meta)


def detached_data_files(p: Path) -> list[Path]:
    """The data file(s) a detached header (.mhd, .nhdr) points to, best effort."""
    suffix = split_suffix(p.name)[1].lower()
    if suffix not in (".mhd", ".nhdr"):
        return []
    key = "elementdatafile" if suffix == ".mhd" else "data file"
    try:
        lines = p.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        name, sep, value = line.partition("=" if key == "elementdatafile" else ":")
        value = value.strip()
        if sep and name.strip().lower() == key and value and value.upper() != "LOCAL":
            return [p.parent / value]
    return []


def read_dicom_file(p: Path, labels: bool) -> Volume:
    """One DICOM file (single or multi-frame) via SimpleITK/GDCM."""
    from segtool.io.dicom_series import check_single_file

    check_single_file(p)
    sitk = _sitk()
    try:
        reader = sitk.ImageFileReader()
        reader.SetImageIO("GDCMImageIO")
        reader.SetFileName(str(p))
        img = reader.Execute()
    except Exception as exc:
        raise read_error(p, "cannot read DICOM image (no pixel data, or corrupt?)", exc) from exc
    return _volume_from_sitk(img, p, "dicom", {"input_paths": [p]})


def read_dicom_dir(p: Path, labels: bool, allow_uneven: bool = False) -> Volume:
    """A directory holding exactly one DICOM series, slices sorted by GDCM.

    Every file's header is checked first (see :mod:`segtool.io.dicom_series`): gaps,
    uneven spacing, duplicates, mixed orientations or series, unreadable or truncated
    files are refused.  With ``allow_uneven`` (images only) a series with missing
    slices or uneven spacing is resampled linearly onto an even grid, and
    ``meta['warnings']`` says so.
    """
    from segtool.io.dicom_series import check_series_directory

    layout = check_series_directory(p, allow_uneven=allow_uneven and not labels)
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    try:
        ids = list(reader.GetGDCMSeriesIDs(str(p)))
    except Exception as exc:
        raise read_error(p, "cannot scan directory for DICOM series", exc) from exc
    if not ids:
        raise ImageReadError(f"{p}: directory holds no DICOM series")
    if len(ids) > 1:
        listing = ", ".join(f"{sid} ({len(reader.GetGDCMSeriesFileNames(str(p), sid))} files)" for sid in ids)
        raise ImageReadError(
            f"{p}: directory holds {len(ids)} DICOM series, put each in its own directory: {listing}"
        )
    files = list(reader.GetGDCMSeriesFileNames(str(p), ids[0]))
    if len(files) != len(layout.slices):
        raise ImageReadError(
            f"{p}: DICOM series {ids[0]}: GDCM found {len(files)} slice files but the directory holds "
            f"{len(layout.slices)} images"
        )
    try:
        reader.SetFileNames(files)
        img = reader.Execute()
    except Exception as exc:
        raise read_error(p, f"cannot read DICOM series {ids[0]}", exc) from exc
    meta = {"input_paths": [p] + [Path(f) for f in files], "series_uid": ids[0], "files": files}
    vol = _volume_from_sitk(img, p, "dicom", meta)
    if not layout.even:
        vol = _resample_series(vol, layout, files)
    return vol


def _resample_series(vol: Volume, layout, files: list[str]) -> Volume:
    """Put an unevenly spaced series (``--allow-uneven``) onto an even grid along the slice normal."""
    from segtool.io.dicom_series import resample_even

    where = {Path(s.path).resolve(): pos for s, pos in zip(layout.slices, layout.positions)}
    positions = [where[Path(f).resolve()] for f in files]
    array, step = resample_even(vol.array, positions)
    sign = 1.0 if positions[-1] >= positions[0] else -1.0
    normal_ras = _LPS_RAS[:3, :3] @ np.asarray(layout.normal)
    affine = vol.affine.copy()
    affine[:3, 2] = normal_ras * sign * step
    vol.meta.setdefault("warnings", []).append(
        f"{vol.path}: {layout.problem}; resampled onto an even grid of {array.shape[-1]} slices "
        f"{step:.4g} mm apart (--allow-uneven); the mask is on that grid"
    )
    return Volume(array, affine, vol.path, vol.kind, vol.header, vol.meta)


def write_sitk_labels(data: np.ndarray, reference: Volume, path: Path) -> None:
    """Any SimpleITK-writable format; affine converted back to LPS geometry."""
    sitk = _sitk()
    dtype = smallest_label_dtype(data, NIFTI_LABEL_TYPES)
    if reference.kind == "photo":
        img = sitk.GetImageFromArray(data.astype(dtype))
    else:
        img = sitk.GetImageFromArray(np.ascontiguousarray(data.astype(dtype).transpose()))
        origin, spacing, direction = ras_affine_to_sitk(reference.affine, data.ndim)
        img.SetOrigin(origin)
        img.SetSpacing(spacing)
        img.SetDirection(direction)
    try:
        sitk.WriteImage(img, str(path), True)
    except RuntimeError as exc:
        if "Unable to determine ImageIO" in str(exc):  # any other ITK error (a full disk) is no format problem
            raise UnsupportedFormat(
                f"unsupported output format {path.suffix!r} (use .nii.gz, .nii, .hdr, .mha, .mhd, .nrrd, .png or .tif)"
            ) from exc
        raise
