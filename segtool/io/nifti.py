"""NIfTI-1/2 and Analyze 7.5 through nibabel: reading (eager, so corruption shows) and writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segtool.errors import ImageReadError, SegtoolError
from segtool.io.dtypes import _ANALYZE_LABEL_TYPES, _NIFTI_LABEL_TYPES, _label_dtype
from segtool.io.messages import _read_error, _shape_str
from segtool.io.volume import Volume


def _spatial_to_volume_array(data: np.ndarray) -> tuple[np.ndarray, dict]:
    """A (x, y[, z, ...]) array as (1, *spatial), trailing singleton dims beyond 3 dropped."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    meta = {"extra_dims": tuple(int(s) for s in data.shape[3:])} if data.ndim > 3 else {}
    return data[None], meta


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
        if np.dtype(img.get_data_dtype()).kind == "c":
            raise ImageReadError(
                f"{p}: complex-valued image ({img.get_data_dtype()}); save the magnitude (or real part) instead"
            )
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
