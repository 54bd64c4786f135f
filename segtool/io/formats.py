"""File naming, segtool's one place for it: suffix tables, suffix and stem of a name
(``.nii.gz`` counts as one suffix), photo detection and output format.

Every name segtool makes or takes apart (default outputs, ``_prob``/``_overlay`` names,
stacks, training folders) goes through :func:`split_suffix`; there is no second list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from segtool.errors import UsageError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ANALYZE_SUFFIXES = (".hdr", ".img")
SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
#: Suffixes a mask may be written with for photos (lossless only).
PHOTO_OUT_SUFFIXES = (".png", ".tif", ".tiff")
#: Every suffix segtool reads (files with another suffix are identified by content).
READABLE_SUFFIXES = NIFTI_SUFFIXES + ANALYZE_SUFFIXES + SITK_SUFFIXES + DICOM_SUFFIXES + PHOTO_SUFFIXES + (
    ".ima",
    ".bmp",
    ".gif",
)
#: Every suffix a mask may be written with (``segtool run -o``); the format follows it.
WRITABLE_SUFFIXES = NIFTI_SUFFIXES + ANALYZE_SUFFIXES + SITK_SUFFIXES + DICOM_SUFFIXES + PHOTO_OUT_SUFFIXES
#: Every suffix segtool knows, read or written: the default of :func:`split_suffix`.
KNOWN_SUFFIXES = tuple(dict.fromkeys(READABLE_SUFFIXES + WRITABLE_SUFFIXES))
#: Image files a training folder may hold (an Analyze pair counts once, by its ``.img``).
TRAINING_SUFFIXES = NIFTI_SUFFIXES + SITK_SUFFIXES + (".img",) + PHOTO_SUFFIXES + (".bmp",)


def split_suffix(name: str, suffixes: Iterable[str] = KNOWN_SUFFIXES) -> tuple[str, str]:
    """``name`` as (stem, suffix) for the longest of ``suffixes`` it ends with, in any case
    (longest first: ``a.nii.gz`` gives ``.nii.gz``); the suffix keeps the name's case.

    ``(name, "")`` when it ends with none of them (or is nothing but the suffix).
    Compare the suffix lower-cased: ``split_suffix(path.name)[1].lower() in NIFTI_SUFFIXES``.
    """
    lower = name.lower()
    for suffix in sorted(suffixes, key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return name, ""


def is_photo_path(path: str | os.PathLike) -> bool:
    """True for a file whose suffix is a photo format (PNG, JPEG, TIFF, WebP)."""
    return split_suffix(Path(path).name)[1].lower() in PHOTO_SUFFIXES


def analyze_companions(path: Path) -> list[Path]:
    """The other half of an Analyze pair (``.hdr`` <-> ``.img``), known from the name alone; else []."""
    suffix = split_suffix(path.name)[1].lower()
    if suffix in ANALYZE_SUFFIXES:
        return [path.with_suffix(".img" if suffix == ".hdr" else ".hdr")]
    return []


def output_format(out: Path) -> str:
    """nifti | analyze | photo | dicom-seg | sitk from a mask's suffix (one of ``WRITABLE_SUFFIXES``).

    Refuses (UsageError, one line) JPEG, no suffix and any suffix segtool does not write.
    """
    suffix = split_suffix(out.name)[1].lower()
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in DICOM_SUFFIXES:
        return "dicom-seg"
    if suffix in ANALYZE_SUFFIXES:
        return "analyze"
    if suffix in PHOTO_OUT_SUFFIXES:
        return "photo"
    if suffix in SITK_SUFFIXES:
        return "sitk"
    if suffix in (".jpg", ".jpeg"):
        raise UsageError(f"{out}: masks must be lossless, write .png or .tif instead of JPEG")
    if not Path(out.name).suffix:
        raise UsageError(f"{out}: output name has no suffix to choose a format (use .nii.gz, .png...)")
    raise UsageError(f"{out}: segtool does not write {Path(out.name).suffix} masks; "
                     f"use one of {', '.join(WRITABLE_SUFFIXES)}")


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
    stem = p.name if p.is_dir() else split_suffix(p.name)[0]
    if volume_kind == "photo":
        ext = split_suffix(p.name)[1].lower()
        ext = ext if ext in PHOTO_OUT_SUFFIXES else ".png"
    else:
        ext = ".nii.gz"
    parent = Path(output_dir).expanduser() if output_dir is not None else p.parent
    return parent / f"{stem}{suffix}{ext}"
