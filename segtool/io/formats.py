"""File naming, segtool's one place for it: suffix tables, suffix and stem of a path
(``.nii.gz`` counts as one suffix), photo detection, output format and default output name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from segtool.errors import UsageError

if TYPE_CHECKING:
    from segtool.spec import TaskSpec


NIFTI_SUFFIXES = (".nii.gz", ".nii")
ANALYZE_SUFFIXES = (".hdr", ".img")
SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
#: Suffixes a mask may be written with for photos (lossless only).
PHOTO_OUT_SUFFIXES = (".png", ".tif", ".tiff")
_KNOWN_SUFFIXES = NIFTI_SUFFIXES + ANALYZE_SUFFIXES + SITK_SUFFIXES + DICOM_SUFFIXES + PHOTO_SUFFIXES + (
    ".ima",
    ".bmp",
    ".gif",
)


#: Image files a training folder may hold (an Analyze pair counts once, by its ``.img``).
TRAINING_SUFFIXES = NIFTI_SUFFIXES + SITK_SUFFIXES + (".img",) + PHOTO_SUFFIXES + (".bmp",)


def _suffix(path: Path) -> str:
    """The lower-cased format suffix of ``path`` (``.nii.gz`` counts as one)."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def split_suffix(name: str, suffixes: Iterable[str] = _KNOWN_SUFFIXES) -> tuple[str, str]:
    """``name`` as (stem, suffix) for the longest of ``suffixes`` it ends with (any case);
    ``(name, "")`` when it ends with none of them (or is nothing but the suffix)."""
    lower = name.lower()
    for suffix in sorted(suffixes, key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return name, ""


def _stem(path: Path) -> str:
    """``path``'s name without a known image suffix (unknown suffixes are kept)."""
    return split_suffix(path.name)[0]


def is_photo_path(path: str | os.PathLike) -> bool:
    """True for a file whose suffix is a photo format (PNG, JPEG, TIFF, WebP)."""
    return _suffix(Path(path)) in PHOTO_SUFFIXES


def is_photo_task(spec: "TaskSpec") -> bool:
    """True for a task on photos (RGB normalisation, or a photo modality)."""
    return spec.normalization == "rgb" or "photo" in spec.modality.lower()


def _output_format(out: Path) -> str:
    """nifti | analyze | photo | dicom-seg | sitk from the output suffix; refuses JPEG and no suffix."""
    suffix = _suffix(out)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in DICOM_SUFFIXES:
        return "dicom-seg"
    if suffix in ANALYZE_SUFFIXES:
        return "analyze"
    if suffix in PHOTO_OUT_SUFFIXES:
        return "photo"
    if suffix in (".jpg", ".jpeg"):
        raise UsageError(f"{out}: masks must be lossless, write .png or .tif instead of JPEG")
    if not suffix:
        raise UsageError(f"{out}: output name has no suffix to choose a format (use .nii.gz, .png...)")
    return "sitk"


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
