"""Checks of a DICOM series directory before SimpleITK stacks its slices.

GDCM sorts the slices of a series and ITK stacks them as if they were evenly
spaced: a missing slice, uneven spacing, two slices at one position, slices of
mixed orientation, or a truncated file among good ones would all give a volume on
the wrong grid without a word.  :func:`check_series_directory` reads every file's
header with pydicom first and refuses such a series with one line naming the
directory and the problem; :func:`even_grid` describes the even grid a series with
uneven spacing can be resampled onto (``segtool run --allow-uneven``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtool.errors import ImageReadError
from segtool.io.messages import exception_text

#: Files in a series directory that are not slices and are skipped.
IGNORED_SUFFIXES = (".txt", ".json", ".md", ".xml", ".csv", ".html", ".pdf", ".log", ".ini", ".yaml", ".yml")
IGNORED_NAMES = ("DICOMDIR", "LOCKFILE", "VERSION")
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

#: Largest difference between two slices' direction cosines.
ORIENTATION_ATOL = 1e-4


@dataclass(frozen=True)
class SliceInfo:
    path: Path
    series_uid: str
    rows: int | None
    columns: int | None
    frames: int
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None


@dataclass(frozen=True)
class SeriesLayout:
    """Where the slices of a checked series lie along the slice normal (sorted, mm)."""

    slices: tuple[SliceInfo, ...]
    positions: tuple[float, ...]  # along the normal, ascending, one per slice
    normal: tuple[float, float, float] | None  # LPS unit normal of the slices
    even: bool
    problem: str | None  # why the spacing is uneven (None when even)


def _is_ignored(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name.upper() in IGNORED_NAMES or name.lower().endswith(IGNORED_SUFFIXES)


def series_files(directory: Path) -> list[Path]:
    """The candidate slice files of ``directory``; refuses anything that is not a regular file."""
    files = []
    for entry in sorted(directory.iterdir()):
        if _is_ignored(entry):
            continue
        try:
            mode = os.stat(entry).st_mode
        except OSError as exc:
            raise ImageReadError(f"{directory}: cannot read DICOM series: {entry.name}: {exception_text(exc)}") from exc
        if stat.S_ISDIR(mode):
            continue  # sub-directories are not scanned (nor by GDCM)
        if not stat.S_ISREG(mode):
            raise ImageReadError(
                f"{directory}: cannot read DICOM series: {entry.name} is {describe_mode(mode)}, not a regular file"
            )
        files.append(entry)
    return files


def describe_mode(mode: int) -> str:
    """'a named pipe (FIFO)', 'a character device'... for a non-regular file's st_mode."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _floats(value, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _expected_pixel_bytes(ds) -> int | None:
    """Bytes the pixel data needs (uncompressed transfer syntaxes only; None if unknown)."""
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            return None
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:  # noqa: BLE001 - missing or odd attributes: no length check
        return None
    return (rows * cols * samples * frames * bits + 7) // 8


def read_slice_header(path: Path, directory: Path) -> SliceInfo | None:
    """A slice's geometry, or None for a DICOM file that is not an image (a DICOMDIR...).

    Refuses a file pydicom cannot parse, and an image whose pixel data is missing or
    shorter than Rows x Columns x frames needs (a truncated file).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    where = f"{directory}: cannot read DICOM series: {path}"
    try:
        try:
            ds = pydicom.dcmread(str(path))
        except InvalidDicomError:
            ds = pydicom.dcmread(str(path), force=True)
            if "SOPClassUID" not in ds and "PixelData" not in ds:
                raise ImageReadError(f"{where} is not a DICOM file") from None
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds
        raise ImageReadError(f"{where} is unreadable or truncated ({exception_text(exc)})") from exc
    sop_class = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    if sop_class == _DICOMDIR_SOP_CLASS:
        return None
    if "PixelData" not in ds:
        if "Rows" in ds or "ImagePositionPatient" in ds or "SeriesInstanceUID" not in ds:
            raise ImageReadError(f"{where} has no pixel data (truncated?)")
        return None
    expected = _expected_pixel_bytes(ds)
    try:
        got = len(ds.PixelData)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{where} is unreadable or truncated ({exception_text(exc)})") from exc
    if expected is not None and got < expected:
        raise ImageReadError(
            f"{where}: PixelData holds {got} bytes but {ds.Rows} rows x {ds.Columns} columns need {expected} "
            "(truncated file?)"
        )
    return SliceInfo(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        rows=int(ds.Rows) if "Rows" in ds else None,
        columns=int(ds.Columns) if "Columns" in ds else None,
        frames=int(ds.get("NumberOfFrames", 1) or 1),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        position=_floats(ds.get("ImagePositionPatient"), 3),
    )


def check_single_file(path: Path) -> None:
    """Refuse a single DICOM file whose pixel data is shorter than its header says."""
    read_slice_header(path, path.parent)


def check_series_directory(directory: Path, allow_uneven: bool = False) -> SeriesLayout:
    """Read every slice header of ``directory`` and refuse a series ITK would stack wrongly.

    Refused (ImageReadError, one line naming the directory): non-regular or unreadable
    files, truncated pixel data, more than one series UID, different image sizes, mixed
    orientations, a slice without a position, two slices at one position; and, unless
    ``allow_uneven``, missing slices or uneven spacing.
    """
    slices = [s for s in (read_slice_header(f, directory) for f in series_files(directory)) if s is not None]
    if not slices:
        raise ImageReadError(f"{directory}: directory holds no DICOM series")
    uids = sorted({s.series_uid for s in slices})
    if len(uids) > 1:
        listing = ", ".join(f"{uid or '(none)'} ({sum(s.series_uid == uid for s in slices)} files)" for uid in uids)
        raise ImageReadError(
            f"{directory}: directory holds {len(uids)} DICOM series, put each in its own directory: {listing}"
        )
    where = f"{directory}: DICOM series {uids[0] or '(no SeriesInstanceUID)'}"
    if len(slices) == 1:
        return SeriesLayout(tuple(slices), (0.0,), None, True, None)
    normal = _slice_normal(slices, where)
    order = sorted(slices, key=lambda s: float(np.dot(s.position, normal)))
    positions = [float(np.dot(s.position, normal)) for s in order]
    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    tol = max(1e-3, 1e-3 * abs(spacing))
    for k, gap in enumerate(gaps):
        if gap <= tol:
            raise ImageReadError(
                f"{where}: two slices at position {positions[k]:.4g} mm ({order[k].path.name} and "
                f"{order[k + 1].path.name}); remove the duplicate"
            )
    problem = _spacing_problem(gaps, positions)
    if problem is not None and not allow_uneven:
        raise ImageReadError(f"{where}: {problem}; refusing to stack it as evenly spaced (--allow-uneven resamples it)")
    return SeriesLayout(tuple(order), tuple(positions), tuple(float(v) for v in normal), problem is None, problem)


def _slice_normal(slices: list[SliceInfo], where: str) -> np.ndarray:
    """The unit normal of a series' slices, once they are single frames of one size and one orientation."""
    if any(s.frames > 1 for s in slices):
        raise ImageReadError(f"{where}: mixes {len(slices)} files with multi-frame images; give one file")
    sizes = sorted({(s.rows, s.columns) for s in slices})
    if len(sizes) > 1:
        shown = ", ".join(f"{r}x{c}" for r, c in sizes)
        raise ImageReadError(f"{where}: slices have different sizes ({shown})")
    for s in slices:
        if s.orientation is None or s.position is None:
            missing = "ImageOrientationPatient" if s.orientation is None else "ImagePositionPatient"
            raise ImageReadError(f"{where}: {s.path.name} has no valid {missing}; cannot order the slices")
    first = np.asarray(slices[0].orientation)
    for s in slices[1:]:
        if np.abs(np.asarray(s.orientation) - first).max() > ORIENTATION_ATOL:
            raise ImageReadError(
                f"{where}: slices of mixed orientation ({slices[0].path.name} and {s.path.name} differ); "
                "give one orientation per directory"
            )
    normal = np.cross(first[:3], first[3:])
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise ImageReadError(f"{where}: ImageOrientationPatient {list(first)} is degenerate")
    return normal / norm


def _spacing_problem(gaps: np.ndarray, positions: list[float]) -> str | None:
    """Missing slices or uneven spacing between sorted slice ``positions`` (mm), in words; None when even."""
    problem = None
    smallest, largest = float(gaps.min()), float(gaps.max())
    even_tol = max(0.01, 0.01 * smallest)
    if largest - smallest > even_tol:
        k = int(np.argmax(gaps))
        ratio = largest / smallest
        if abs(ratio - round(ratio)) < 0.1 and round(ratio) >= 2:
            n_missing = int(round(ratio)) - 1
            problem = (
                f"{n_missing} missing slice{'s' if n_missing > 1 else ''} between positions {positions[k]:.4g} and "
                f"{positions[k + 1]:.4g} mm (spacing {smallest:.4g} mm elsewhere)"
            )
        else:
            problem = f"uneven slice spacing ({smallest:.4g} to {largest:.4g} mm)"
    return problem


def resample_even(array: np.ndarray, positions: list[float]) -> tuple[np.ndarray, float]:
    """Linearly resample ``array`` (C, x, y, z) whose z slices lie at ``positions`` (ascending or
    descending, mm) onto an even grid from the first to the last position; returns (array, step).

    The step is the smallest spacing found, so no slice's detail is lost.
    """
    pos = np.asarray(positions, dtype=float)
    sign = 1.0 if pos[-1] >= pos[0] else -1.0
    rel = (pos - pos[0]) * sign  # ascending from 0
    step = float(np.diff(rel).min())
    count = int(np.floor(rel[-1] / step + 1e-6)) + 1
    targets = np.arange(count) * step
    idx = np.clip(np.searchsorted(rel, targets, side="right") - 1, 0, len(rel) - 2)
    w = ((targets - rel[idx]) / (rel[idx + 1] - rel[idx])).astype(np.float32)
    lo = array[..., idx].astype(np.float32)
    hi = array[..., idx + 1].astype(np.float32)
    return lo * (1 - w) + hi * w, step
