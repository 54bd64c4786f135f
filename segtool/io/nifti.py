"""NIfTI-1/2 and Analyze 7.5 through nibabel: reading (eager, so corruption shows) and writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segtool.errors import ImageReadError, SegtoolError
from segtool.io.dtypes import ANALYZE_LABEL_TYPES, NIFTI_LABEL_TYPES, smallest_label_dtype
from segtool.io.messages import read_error, shape_text
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
            raise ImageReadError(f"{p}: image has zero size (shape {shape_text(img.shape)})")
        if np.dtype(img.get_data_dtype()).kind == "c":
            raise ImageReadError(
                f"{p}: complex-valued image ({img.get_data_dtype()}); save the magnitude (or real part) instead"
            )
        data = np.asanyarray(img.dataobj) if labels else img.get_fdata(dtype=np.float32)
    except SegtoolError:
        raise
    except Exception as exc:
        raise read_error(p, f"cannot read {what} file, corrupt or truncated?", exc) from exc
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


#: Image data is read, scaled and converted to float32 about this many stored bytes at a time.
READ_CHUNK_BYTES = 16 * 1024 * 1024


def _read_float32_nifti(p: Path):
    """(image, float32 C-order data) of a single-file NIfTI read a few planes at a time, or None.

    The values are ``get_fdata(dtype=np.float32)``'s (nibabel's scaling, applied the same
    way plane by plane), but the data is held once: no whole-file bytes, no array of the
    stored type, no Fortran-order array to transpose (together 2x the float32 data). The
    file is still read to its end, so gzip checks its CRC and length. None for anything
    unusual (a short or damaged file, a zero-size, complex or structured image): the
    whole-file path then reads it, or says what is wrong.
    """
    import gzip

    import nibabel as nib
    from nibabel.fileholders import FileHolder

    try:
        with open(p, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
            head = fh.read(348)
            cls = nib.Nifti1Image if head[344:348] == b"n+1\0" else nib.Nifti2Image if head[4:8] == b"n+2\0" else None
            if cls is None:
                return None
            fh.seek(0)
            holder = FileHolder(fileobj=fh)
            img = cls.from_file_map({"image": holder, "header": holder}, mmap=False)
            proxy = img.dataobj
            shape, dtype = tuple(int(n) for n in proxy.shape), np.dtype(proxy.dtype)
            if len(shape) < 2 or 0 in shape or dtype.kind not in "iuf" or dtype.fields or proxy.order != "F":
                return None
            data = _scaled_planes(fh, proxy, shape, dtype)
            if data is None:
                return None
            while fh.read(READ_CHUNK_BYTES):  # to the end: a gzip stream's CRC and length are checked there
                pass
    except Exception:  # noqa: BLE001 - the whole-file path reads it again and explains the problem
        return None
    return img, data


def _scaled_planes(fh, proxy, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The data (C order, float32) from ``fh``, stored Fortran order: the last axis's planes come one after another."""
    from nibabel.volumeutils import apply_read_scaling

    core = list(shape)
    while len(core) > 1 and core[-1] == 1:  # trailing singleton axes do not change the stored order
        core.pop()
    out = np.empty(core, dtype=np.float32)
    plane = int(np.prod(core[:-1], dtype=np.int64))
    step = max(1, READ_CHUNK_BYTES // max(1, plane * dtype.itemsize))
    # nibabel's ArrayProxy._get_scaled with dtype=float32, as get_fdata(dtype=np.float32) calls it
    slope, inter = np.asanyarray(proxy.slope), np.asanyarray(proxy.inter)
    if np.can_cast(slope, np.float32):
        slope = slope.astype(np.float32)
    if np.can_cast(inter, np.float32):
        inter = inter.astype(np.float32)
    fh.seek(proxy.offset)
    # one buffer for every chunk: a fresh 16 MB one each time would come from the heap once glibc has
    # raised its mmap threshold, and stay resident after the read (2x READ_CHUNK_BYTES)
    buffer = np.empty(plane * min(step, core[-1]), dtype=dtype)
    for first in range(0, core[-1], step):
        count = min(step, core[-1] - first)
        stored = buffer[: plane * count]
        raw, filled = stored.view(np.uint8), 0
        while filled < raw.size:
            got = fh.readinto(raw[filled:])
            if not got:
                return None  # short file
            filled += got
        scaled = apply_read_scaling(stored.reshape((*core[:-1], count), order="F"), slope, inter)
        out[..., first : first + count] = scaled.astype(np.promote_types(scaled.dtype, np.float32), copy=False)
    return out.reshape(shape)


def read_nifti(p: Path, labels: bool) -> Volume:
    """NIfTI-1/2 single file via nibabel; the header (qform/sform codes...) is kept."""
    fast = None if labels else _read_float32_nifti(p)
    img, data = fast if fast is not None else _load_nibabel(p, labels, "NIfTI")
    array, meta = _spatial_to_volume_array(data)
    meta.update(input_paths=[p], dtype=str(img.get_data_dtype()))
    return Volume(array, np.asarray(img.affine, dtype=np.float64), p, "nifti", img.header.copy(), meta)


def read_analyze(p: Path, labels: bool) -> Volume:
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


def write_nifti(data: np.ndarray, reference: Volume, path: Path, dtype, pair: bool = False) -> None:
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


def write_nifti_labels(data: np.ndarray, reference: Volume, path: Path) -> None:
    write_nifti(data, reference, path, smallest_label_dtype(data, NIFTI_LABEL_TYPES))


def write_analyze_labels(data: np.ndarray, reference: Volume, path: Path) -> None:
    """Analyze pair for an Analyze reference, else a NIfTI pair (keeps the affine)."""
    import nibabel as nib

    hdr = reference.header
    if isinstance(hdr, nib.Nifti1Header) or not isinstance(hdr, nib.AnalyzeHeader):
        write_nifti(data, reference, path, smallest_label_dtype(data, NIFTI_LABEL_TYPES), pair=True)
        return
    cls = _analyze_class(hdr)
    dtype = smallest_label_dtype(data, ANALYZE_LABEL_TYPES)
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
