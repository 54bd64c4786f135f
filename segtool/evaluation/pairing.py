"""Pairing the label files of two folders by case name.

A file's *case key* is its name without the image suffix (``.nii.gz``, ``.nii``,
``.hdr``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``, ``.png``, ``.tif``, ``.tiff``,
``.jpg``, ``.jpeg``, ``.bmp``) and without one trailing role suffix (``_seg``,
``_dseg``, ``_mask``, ``_label``, ``_labels``, ``_gt``, ``_pred``, ``_prediction``,
``_segmentation``; case-insensitive). Files pair when their keys are equal, so
nnU-Net (``case_001.nii.gz`` in both folders), BraTS (``BraTS_001.nii.gz`` vs
``BraTS_001_seg.nii.gz``) and BIDS derivatives (``sub-01_T1w_dseg.nii.gz``) all pair.
Other files (``.json``, ``.pkl``, hidden files, sub-folders) are ignored; image files
without a partner are listed as unmatched, never dropped silently. The rule is
documented in docs/metrics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segtool.errors import UsageError
from segtool.io.formats import split_suffix

IMAGE_SUFFIXES = (
    ".nii.gz", ".nii", ".hdr", ".mha", ".mhd", ".nrrd", ".nhdr",
    ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp",
)
ROLE_SUFFIXES = ("_segmentation", "_prediction", "_labels", "_label", "_dseg", "_mask", "_pred", "_seg", "_gt")


@dataclass
class Pairing:
    """Files of two folders: (case key, prediction, ground truth) per pair, and the rest."""

    pairs: list[tuple[str, Path, Path]]
    unmatched_pred: list[Path]
    unmatched_gt: list[Path]


def case_key(path: str | Path) -> str:
    """The case a label file belongs to (see this module's docstring for the rule)."""
    stem, _ = split_suffix(Path(path).name, IMAGE_SUFFIXES)
    role_free, role = split_suffix(stem, ROLE_SUFFIXES)
    return role_free if role else stem


def _label_files(folder: Path) -> dict[str, Path]:
    keyed: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not split_suffix(path.name, IMAGE_SUFFIXES)[1]:
            continue
        keyed.setdefault(case_key(path), []).append(path)
    clashes = {k: v for k, v in keyed.items() if len(v) > 1}
    if clashes:
        key, paths = next(iter(sorted(clashes.items())))
        names = ", ".join(p.name for p in paths)
        raise UsageError(f"{folder}: files {names} all name case {key!r}; keep one per case")
    return {k: v[0] for k, v in keyed.items()}


def pair_folders(pred_dir: str | Path, gt_dir: str | Path) -> Pairing:
    """Pair the label files of two folders by case key; list the unmatched ones."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    preds, gts = _label_files(pred_dir), _label_files(gt_dir)
    common = sorted(set(preds) & set(gts))
    return Pairing(
        pairs=[(key, preds[key], gts[key]) for key in common],
        unmatched_pred=[preds[k] for k in sorted(set(preds) - set(gts))],
        unmatched_gt=[gts[k] for k in sorted(set(gts) - set(preds))],
    )

