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
:func:`write_probabilities`).  Every write is atomic: files are written into a
hidden temporary directory ``.seg-tmp-XXXX/`` beside the output, under their final
names (so libraries pick the format from the real suffix and detached headers such
as ``.mhd`` keep pointing at the right data file), then moved into place with
:func:`os.replace`; on any failure the temporary directory is removed.

Heavy libraries (nibabel, SimpleITK, pydicom, Pillow) are imported lazily inside
the functions that need them, so ``import segtool.io`` stays cheap.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from segtool.errors import (
    GeometryError,
    ImageReadError,
    OutputExistsError,
    SegtoolError,
    UsageError,
)


@dataclass
class Volume:
    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    kind: str = "nifti"  # nifti | analyze | dicom | sitk | photo
    header: Any = None
    meta: dict = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    @property
    def ndim(self) -> int:
        return self.array.ndim - 1

    @property
    def channels(self) -> int:
        return self.array.shape[0]

    @property
    def spacing(self) -> tuple[float, ...]:
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return tuple(float(z) for z in zooms[: self.ndim])


# --------------------------------------------------------------------------- suffixes

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ANALYZE_SUFFIXES = (".hdr", ".img")
SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Suffixes a mask may be written with for photos (lossless only).
PHOTO_OUT_SUFFIXES = (".png", ".tif", ".tiff")
_KNOWN_SUFFIXES = NIFTI_SUFFIXES + ANALYZE_SUFFIXES + SITK_SUFFIXES + DICOM_SUFFIXES + PHOTO_SUFFIXES + (
    ".ima",
    ".bmp",
    ".gif",
    ".webp",
)

#: Tolerance on affines when checking that channels share a grid.
GRID_ATOL = 1e-4

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _suffix(path: Path) -> str:
    """The lower-cased format suffix of ``path`` (``.nii.gz`` counts as one)."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def _stem(path: Path) -> str:
    """``path``'s name without a known image suffix (unknown suffixes are kept)."""
    name = path.name
    for suffix in sorted(_KNOWN_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _reason(exc: BaseException) -> str:
    """A library exception as a short single line (ITK's source-location prefix dropped)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"^.*ERROR:\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", text) or text
    return text if len(text) <= 240 else text[:237] + "..."


def _read_error(path: Path, problem: str, exc: BaseException | None = None) -> ImageReadError:
    """An ImageReadError naming the file, with the library's reason appended."""
    message = f"{path}: {problem}"
    if exc is not None:
        message += f" ({_reason(exc)})"
    return ImageReadError(" ".join(message.split()))


def _shape_str(shape: Iterable[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


# --------------------------------------------------------------------------- reading


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


def _spatial_to_volume_array(data: np.ndarray) -> tuple[np.ndarray, dict]:
    """A (x, y[, z, ...]) array as (1, *spatial), trailing singleton dims beyond 3 dropped."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    meta = {"extra_dims": tuple(int(s) for s in data.shape[3:])} if data.ndim > 3 else {}
    return data[None], meta


# ---- NIfTI / Analyze


def _load_nibabel(p: Path, labels: bool, what: str):
    """Load a nibabel image and its data eagerly (so corruption shows up here).

    Single-file NIfTI is read whole first: for gzip that checks the stream's CRC and
    length, which a partial read (all nibabel needs) would not notice.
    """
    import nibabel as nib

    try:
        img = nib.load(str(p), mmap=False) if what == "Analyze" else _nifti_from_bytes(_read_all(p))
        if 0 in img.shape:
            raise ImageReadError(f"{p}: image has zero size (shape {_shape_str(img.shape)})")
        data = np.asanyarray(img.dataobj) if labels else img.get_fdata(dtype=np.float32)
    except SegtoolError:
        raise
    except Exception as exc:
        raise _read_error(p, f"cannot read {what} file, corrupt or truncated?", exc) from exc
    if data.ndim < 2:
        raise ImageReadError(f"{p}: {data.ndim}D data is not an image")
    return img, data


def _read_all(p: Path) -> bytes:
    """The file's bytes, gunzipped (to the end, verifying the CRC) if it is gzip."""
    import gzip

    with open(p, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if not gz:
        return p.read_bytes()
    with gzip.open(p, "rb") as fh:
        return fh.read()


def _nifti_from_bytes(raw: bytes):
    """A NIfTI-1 or NIfTI-2 single-file image from its (uncompressed) bytes."""
    import nibabel as nib

    if raw[344:348] == b"n+1\0":
        return nib.Nifti1Image.from_bytes(raw)
    if raw[4:8] == b"n+2\0":
        return nib.Nifti2Image.from_bytes(raw)
    raise ValueError("not a NIfTI file: no n+1/n+2 magic in the header")


def _read_nifti(p: Path, labels: bool) -> Volume:
    """NIfTI-1/2 single file via nibabel; the header (qform/sform codes...) is kept."""
    img, data = _load_nibabel(p, labels, "NIfTI")
    array, meta = _spatial_to_volume_array(data)
    meta.update(input_paths=[p], dtype=str(img.get_data_dtype()))
    return Volume(array, np.asarray(img.affine, dtype=np.float64), p, "nifti", img.header.copy(), meta)


def _read_analyze(p: Path, labels: bool) -> Volume:
    """Analyze 7.5 (or NIfTI pair) ``.hdr``/``.img`` given either file of the pair."""
    img, data = _load_nibabel(p, labels, "Analyze")
    array, meta = _spatial_to_volume_array(data)
    pair = [p.with_suffix(s) for s in (".hdr", ".img")]
    meta.update(input_paths=[p] + [q for q in pair if q != p], dtype=str(img.get_data_dtype()))
    return Volume(array, np.asarray(img.affine, dtype=np.float64), p, "analyze", img.header.copy(), meta)


# ---- SimpleITK (DICOM, MetaImage, NRRD)


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


def _read_sitk(p: Path, labels: bool) -> Volume:
    """MetaImage / NRRD via SimpleITK."""
    sitk = _sitk()
    try:
        img = sitk.ReadImage(str(p))
    except Exception as exc:
        raise _read_error(p, "cannot read image, corrupt or truncated?", exc) from exc
    meta = {"input_paths": [p] + _detached_data_files(p)}
    return _volume_from_sitk(img, p, "sitk", meta)


def _detached_data_files(p: Path) -> list[Path]:
    """The data file(s) a detached header (.mhd, .nhdr) points to, best effort."""
    if _suffix(p) not in (".mhd", ".nhdr"):
        return []
    key = "elementdatafile" if _suffix(p) == ".mhd" else "data file"
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


def _read_dicom_file(p: Path, labels: bool) -> Volume:
    """One DICOM file (single or multi-frame) via SimpleITK/GDCM."""
    sitk = _sitk()
    try:
        reader = sitk.ImageFileReader()
        reader.SetImageIO("GDCMImageIO")
        reader.SetFileName(str(p))
        img = reader.Execute()
    except Exception as exc:
        raise _read_error(p, "cannot read DICOM image (no pixel data, or corrupt?)", exc) from exc
    return _volume_from_sitk(img, p, "dicom", {"input_paths": [p]})


def _read_dicom_dir(p: Path, labels: bool) -> Volume:
    """A directory holding exactly one DICOM series, slices sorted by GDCM."""
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    try:
        ids = list(reader.GetGDCMSeriesIDs(str(p)))
    except Exception as exc:
        raise _read_error(p, "cannot scan directory for DICOM series", exc) from exc
    if not ids:
        raise ImageReadError(f"{p}: directory holds no DICOM series")
    if len(ids) > 1:
        listing = ", ".join(f"{sid} ({len(reader.GetGDCMSeriesFileNames(str(p), sid))} files)" for sid in ids)
        raise ImageReadError(
            f"{p}: directory holds {len(ids)} DICOM series, put each in its own directory: {listing}"
        )
    files = list(reader.GetGDCMSeriesFileNames(str(p), ids[0]))
    try:
        reader.SetFileNames(files)
        img = reader.Execute()
    except Exception as exc:
        raise _read_error(p, f"cannot read DICOM series {ids[0]}", exc) from exc
    meta = {"input_paths": [p] + [Path(f) for f in files], "series_uid": ids[0], "files": files}
    return _volume_from_sitk(img, p, "dicom", meta)


# ---- photos (Pillow)


def _read_photo(p: Path, labels: bool) -> Volume:
    """A 2D photo via Pillow as (C, rows, cols) with the identity affine.

    RGB -> 3 channels; grey, 16-bit and float -> 1; alpha is dropped; palette images
    become grey if their palette is grey, else RGB (for label maps, palette indices
    are kept).  EXIF orientation is applied so the mask lines up with the photo as
    viewers display it.  ``meta`` records the original ``mode`` and ``format``.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(p) as im:
            fmt, mode = im.format, im.mode
            if getattr(im, "n_frames", 1) > 1:
                raise ImageReadError(f"{p}: multi-page images are not supported ({im.n_frames} pages)")
            im.load()
            im = ImageOps.exif_transpose(im)
            data = _label_pixels(p, im) if labels else _photo_pixels(im)
    except SegtoolError:
        raise
    except Exception as exc:
        raise _read_error(p, "cannot read image, corrupt or truncated?", exc) from exc
    array = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
    meta = {"input_paths": [p], "mode": mode, "format": fmt}
    return Volume(array, np.eye(4), p, "photo", None, meta)


def _photo_pixels(im) -> np.ndarray:
    """Pixels of a Pillow image as (H, W) or (H, W, 3)."""
    mode = im.mode
    if mode in ("P", "PA"):
        rgb = np.asarray(im.convert("RGB"))
        return rgb[..., 0] if _is_grey(rgb) else rgb
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(im)[..., 0]
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(im)[..., :3]
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"))
    return np.asarray(im)  # L, RGB, I, I;16*, F


def _label_pixels(p: Path, im) -> np.ndarray:
    """Pixels of a label image: palette indices, grey values, or equal RGB channels."""
    if im.mode == "1":
        return np.asarray(im).astype(np.uint8)
    if im.mode in ("P", "PA", "LA", "La"):
        data = np.asarray(im)
        return data[..., 0] if data.ndim == 3 else data
    data = _photo_pixels(im)
    if data.ndim == 3:
        if not _is_grey(data):
            raise ImageReadError(f"{p}: colour image is not a label map (use grey or palette values)")
        data = data[..., 0]
    return data


def _is_grey(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


# --------------------------------------------------------------------------- channels


def read_channels(
    paths: str | os.PathLike | Sequence[str | os.PathLike], ndim: int, channel_names: Sequence[str]
) -> Volume:
    """Read a task's input channels and stack them into one Volume.

    Each path gives as many channels as it holds (an RGB photo 3, a grey file 1).
    Raises :class:`GeometryError` when a file's dimensionality does not match
    ``ndim`` ("4D volume for a 3D task"), when the total channel count is not
    ``len(channel_names)``, or when files are on different grids (shape, or affine
    beyond ``GRID_ATOL``).  Geometry, header, path and kind come from the first file;
    ``meta['input_paths']`` lists every input and ``meta['channel_paths']`` the paths.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p).expanduser() for p in paths]
    if not paths:
        raise GeometryError(f"task expects {_channels_str(channel_names)}, got no input files")
    volumes = [read_volume(p) for p in paths]
    for vol in volumes:
        _check_ndim(vol, ndim)
    _check_channel_count(volumes, channel_names)
    for vol in volumes[1:]:
        _check_same_grid(volumes[0], vol)
    return _stack(volumes)


def _channels_str(names: Sequence[str]) -> str:
    return f"{len(names)} channel{'s' if len(names) != 1 else ''} ({', '.join(names)})"


def _check_ndim(vol: Volume, ndim: int) -> None:
    """Refuse a volume whose spatial dimensionality is not the task's."""
    if vol.ndim == ndim:
        return
    what = "image" if vol.ndim == 2 else "volume"
    raise GeometryError(
        f"{vol.path}: {vol.ndim}D {what} for a {ndim}D task (shape {_shape_str(vol.spatial_shape)})"
    )


def _check_channel_count(volumes: list[Volume], names: Sequence[str]) -> None:
    """The total channel count over all files must equal the task's."""
    got = sum(v.channels for v in volumes)
    if got != len(names):
        files = ", ".join(f"{v.path}: {v.channels}" for v in volumes)
        raise GeometryError(f"task expects {_channels_str(names)}, got {got} ({files})")


def _check_same_grid(first: Volume, other: Volume) -> None:
    """Both volumes must have the same spatial shape and affine (within GRID_ATOL)."""
    if first.spatial_shape != other.spatial_shape:
        raise GeometryError(
            f"{first.path} and {other.path} are on different grids: shape "
            f"{_shape_str(first.spatial_shape)} vs {_shape_str(other.spatial_shape)}"
        )
    diff = float(np.abs(np.asarray(first.affine) - np.asarray(other.affine)).max())
    if diff > GRID_ATOL:
        raise GeometryError(
            f"{first.path} and {other.path} are on different grids: affines differ by up to {diff:.4g}"
        )


def _stack(volumes: list[Volume]) -> Volume:
    """One Volume with all channels, geometry and metadata of the first."""
    first = volumes[0]
    if len(volumes) == 1:
        array = first.array
    else:
        array = np.concatenate([v.array for v in volumes], axis=0)
    meta = dict(first.meta)
    inputs: list[Path] = []
    for vol in volumes:
        inputs.extend(p for p in vol.meta.get("input_paths", [vol.path]) if p not in inputs)
    meta["input_paths"] = inputs
    meta["channel_paths"] = [v.path for v in volumes]
    return Volume(array, first.affine, first.path, first.kind, first.header, meta)


# --------------------------------------------------------------------------- output paths


def default_output_path(
    input_path: str | os.PathLike,
    volume_kind: str,
    output_dir: str | os.PathLike | None = None,
    suffix: str = "_seg",
) -> Path:
    """Where a mask goes by default: ``<stem><suffix>.<ext>`` beside the input or in ``output_dir``.

    3D inputs (NIfTI, Analyze, DICOM, MHA, NRRD...) give ``<stem>_seg.nii.gz``; the
    stem drops a known image suffix (``.nii.gz``, ``.nii``, ``.hdr``, ``.img``,
    ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``, ``.dcm``...); a DICOM directory gives
    ``<directory name>_seg.nii.gz`` beside the directory.  Photos keep their format
    when it is lossless (``.png`` -> ``.png``, ``.tif``/``.tiff`` -> same suffix);
    JPEG (and anything else) gives ``.png``, because masks must be lossless: JPEG
    compression would change label values at edges.
    """
    p = Path(input_path).expanduser()
    if p.is_dir() and not p.name:
        p = p.resolve()
    stem = p.name if p.is_dir() else _stem(p)
    if volume_kind == "photo":
        ext = p.suffix.lower() if p.suffix.lower() in PHOTO_OUT_SUFFIXES else ".png"
    else:
        ext = ".nii.gz"
    parent = Path(output_dir).expanduser() if output_dir is not None else p.parent
    return parent / f"{stem}{suffix}{ext}"


# --------------------------------------------------------------------------- writing


def write_labels(
    labels: np.ndarray, reference: Volume, out_path: str | os.PathLike, overwrite: bool = False
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
      as ITK writes 2D images; no geometry is kept.
    - anything else (``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``...): SimpleITK, with
      the affine converted to LPS origin/spacing/direction; compressed.

    The stored type is uint8 when labels fit, else uint16 (int16/int32 for Analyze,
    which lacks uint16), with scl_slope/inter 1/0.  Refuses (OutputExistsError) to
    write onto any input of the reference even with ``overwrite``, and onto an
    existing file without ``overwrite``.  Atomic (see the module docstring).
    """
    out = Path(out_path).expanduser()
    data = _label_array(labels, reference)
    fmt = _output_format(out)
    if fmt == "photo":
        _check_photo_output(out, data)
    return _atomic_write(out, reference, overwrite, lambda tmp: _LABEL_WRITERS[fmt](data, reference, tmp))


def write_probabilities(
    probs: np.ndarray, reference: Volume, out_path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write float32 class probabilities ``(C, *spatial)`` as a 4D NIfTI ``(x, y, z, C)``.

    The reference's affine (and NIfTI header, datatype set to float32) is used.  2D
    references (photos included) also give a NIfTI: ``(rows, cols, 1, C)`` with the
    reference's affine (the identity for photos).  Only ``.nii``/``.nii.gz`` are
    accepted.  Same refusal and atomicity rules as :func:`write_labels`.
    """
    out = Path(out_path).expanduser()
    if _suffix(out) not in NIFTI_SUFFIXES:
        raise UsageError(f"{out}: probability maps are written as NIfTI, use a .nii.gz or .nii name")
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != reference.ndim + 1 or probs.shape[1:] != reference.spatial_shape:
        raise GeometryError(
            f"{out}: probabilities of shape {_shape_str(probs.shape)} do not match the reference grid "
            f"{_shape_str(reference.spatial_shape)} (expected C x grid)"
        )
    data = np.moveaxis(probs, 0, -1)
    if reference.ndim == 2:
        data = data[:, :, None, :]
    return _atomic_write(out, reference, overwrite, lambda tmp: _write_nifti(data, reference, tmp, np.float32))


def _label_array(labels: np.ndarray, reference: Volume) -> np.ndarray:
    """Check shape and integrality; returns an integer array."""
    data = np.asarray(labels)
    if data.shape != reference.spatial_shape:
        raise GeometryError(
            f"label map of shape {_shape_str(data.shape)} does not match the reference grid "
            f"{_shape_str(reference.spatial_shape)} ({reference.path})"
        )
    if data.dtype == bool:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.isfinite(data).all() or not np.array_equal(data, np.rint(data)):
            raise ValueError("labels must be integers")
        data = data.astype(np.int64)
    return data


def _label_dtype(data: np.ndarray, allowed: Sequence[type]) -> np.dtype:
    """The first of ``allowed`` integer types that holds every value of ``data``."""
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in allowed:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    raise ValueError(f"label values {lo}..{hi} do not fit any of {[np.dtype(t).name for t in allowed]}")


_NIFTI_LABEL_TYPES = (np.uint8, np.uint16, np.int16, np.int32)
_ANALYZE_LABEL_TYPES = (np.uint8, np.int16, np.int32)
_PHOTO_LABEL_TYPES = (np.uint8, np.uint16)


def _output_format(out: Path) -> str:
    """nifti | analyze | photo | sitk from the output suffix; refuses JPEG and no suffix."""
    suffix = _suffix(out)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in ANALYZE_SUFFIXES:
        return "analyze"
    if suffix in PHOTO_OUT_SUFFIXES:
        return "photo"
    if suffix in (".jpg", ".jpeg"):
        raise UsageError(f"{out}: masks must be lossless, write .png or .tif instead of JPEG")
    if not suffix:
        raise UsageError(f"{out}: output name has no suffix to choose a format (use .nii.gz, .png...)")
    return "sitk"


def _check_photo_output(out: Path, data: np.ndarray) -> None:
    if data.ndim != 2:
        raise UsageError(f"{out}: a {data.ndim}D label map cannot be written as {out.suffix}, use .nii.gz")


# ---- atomic write and refusals


def _input_paths(reference: Volume) -> list[Path]:
    inputs = reference.meta.get("input_paths") or ([reference.path] if reference.path else [])
    return [Path(p) for p in inputs]


def _is_same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_target(target: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse inputs always, existing files unless ``overwrite``, directories always."""
    if any(_is_same_file(target, p) for p in inputs):
        raise OutputExistsError(f"{target}: refusing to overwrite an input image")
    if target.is_dir():
        raise OutputExistsError(f"{target}: is a directory")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: output exists (use --overwrite)")


def _companions(out: Path) -> list[Path]:
    """Files written alongside ``out`` that are known in advance (.hdr <-> .img)."""
    suffix = _suffix(out)
    if suffix in ANALYZE_SUFFIXES:
        return [out.with_suffix(".img" if suffix == ".hdr" else ".hdr")]
    return []


class _UnsupportedFormat(Exception):
    """Raised by a writer when its library cannot write the requested suffix."""


def _atomic_write(out: Path, reference: Volume, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """Write via ``write(tmp_path)`` into a temp dir beside ``out``, then os.replace into place."""
    inputs = _input_paths(reference)
    for target in [out] + _companions(out):
        _check_target(target, inputs, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=".seg-tmp-", dir=out.parent))
    except OSError as exc:
        raise SegtoolError(f"{out}: cannot create output directory ({_reason(exc)})") from exc
    try:
        write(tmpdir / out.name)
        _move_into_place(sorted(tmpdir.iterdir()), out.parent, inputs, overwrite)
    except SegtoolError:
        raise
    except _UnsupportedFormat as exc:
        raise UsageError(f"{out}: {exc}") from exc
    except Exception as exc:
        raise SegtoolError(f"{out}: cannot write ({_reason(exc)})") from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def _move_into_place(produced: list[Path], directory: Path, inputs: list[Path], overwrite: bool) -> None:
    """Check every produced file's destination first, then os.replace each."""
    for f in produced:
        _check_target(directory / f.name, inputs, overwrite)
    for f in produced:
        os.replace(f, directory / f.name)


# ---- per-format writers


def _nifti_header(reference: Volume, pair: bool):
    """(image class, header) for a NIfTI written on ``reference``'s grid."""
    import nibabel as nib

    hdr = reference.header
    if isinstance(hdr, nib.Nifti2Header):
        return (nib.Nifti2Pair if pair else nib.Nifti2Image), hdr.copy()
    if isinstance(hdr, nib.Nifti1Header):
        return (nib.Nifti1Pair if pair else nib.Nifti1Image), hdr.copy()
    new = nib.Nifti1Header.from_header(hdr) if hdr is not None else nib.Nifti1Header()
    new.set_qform(reference.affine, code=1)
    new.set_sform(reference.affine, code=1)
    if new.get_xyzt_units()[0] == "unknown":
        new.set_xyzt_units("mm")
    return (nib.Nifti1Pair if pair else nib.Nifti1Image), new


def _write_nifti(data: np.ndarray, reference: Volume, path: Path, dtype, pair: bool = False) -> None:
    """NIfTI single file (or pair) with the reference's exact affine and header."""
    cls, hdr = _nifti_header(reference, pair)
    affine = np.asarray(reference.affine, dtype=np.float64)
    if not np.allclose(hdr.get_best_affine(), affine, rtol=0, atol=1e-6):
        hdr.set_qform(affine, code=max(int(hdr["qform_code"]), 1))
        hdr.set_sform(affine, code=max(int(hdr["sform_code"]), 1))
    hdr.set_intent("none", ())
    hdr["cal_min"], hdr["cal_max"] = 0, 0
    img = cls(data.astype(dtype, copy=False), affine, header=hdr)
    img.set_data_dtype(dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.to_filename(str(path))


def _write_nifti_labels(data: np.ndarray, reference: Volume, path: Path) -> None:
    _write_nifti(data, reference, path, _label_dtype(data, _NIFTI_LABEL_TYPES))


def _write_analyze_labels(data: np.ndarray, reference: Volume, path: Path) -> None:
    """Analyze pair for an Analyze reference, else a NIfTI pair (keeps the affine)."""
    import nibabel as nib

    hdr = reference.header
    if isinstance(hdr, nib.Nifti1Header) or not isinstance(hdr, nib.AnalyzeHeader):
        _write_nifti(data, reference, path, _label_dtype(data, _NIFTI_LABEL_TYPES), pair=True)
        return
    cls = _analyze_class(hdr)
    dtype = _label_dtype(data, _ANALYZE_LABEL_TYPES)
    img = cls(data.astype(dtype), np.asarray(reference.affine, dtype=np.float64), header=hdr.copy())
    img.set_data_dtype(dtype)
    if img.header.has_data_slope:
        img.header.set_slope_inter(1.0, 0.0 if img.header.has_data_intercept else None)
    img.to_filename(str(path))


def _analyze_class(hdr):
    """The nibabel image class matching an Analyze-family header."""
    import nibabel as nib

    for header_cls, image_cls in (
        (nib.Spm2AnalyzeHeader, nib.Spm2AnalyzeImage),
        (nib.Spm99AnalyzeHeader, nib.Spm99AnalyzeImage),
    ):
        if isinstance(hdr, header_cls):
            return image_cls
    return nib.AnalyzeImage


def _write_sitk_labels(data: np.ndarray, reference: Volume, path: Path) -> None:
    """Any SimpleITK-writable format; affine converted back to LPS geometry."""
    sitk = _sitk()
    dtype = _label_dtype(data, _NIFTI_LABEL_TYPES)
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
        if "ImageIO" in str(exc):
            raise _UnsupportedFormat(
                f"unsupported output format {path.suffix!r} (use .nii.gz, .nii, .hdr, .mha, .mhd, .nrrd, .png or .tif)"
            ) from exc
        raise


def _write_photo_labels(data: np.ndarray, reference: Volume, path: Path) -> None:
    """PNG/TIFF mask: mode L (8-bit) when labels fit, else I;16."""
    from PIL import Image

    dtype = _label_dtype(data, _PHOTO_LABEL_TYPES)
    if reference.kind != "photo":
        data = data.T  # (x, y) -> (rows=y, cols=x), as ITK writes 2D images
    img = Image.fromarray(np.ascontiguousarray(data.astype(dtype)))
    fmt = "PNG" if _suffix(path) == ".png" else "TIFF"
    img.save(str(path), format=fmt, **({"compression": "tiff_deflate"} if fmt == "TIFF" else {}))


_LABEL_WRITERS: dict[str, Callable[[np.ndarray, Volume, Path], None]] = {
    "nifti": _write_nifti_labels,
    "analyze": _write_analyze_labels,
    "sitk": _write_sitk_labels,
    "photo": _write_photo_labels,
}
