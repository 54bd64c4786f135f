"""Pairing the label files of two folders by case name.

A file's *case key* is its name without the image suffix (``.nii.gz``, ``.nii``,
``.hdr``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``, ``.png``, ``.tif``, ``.tiff``,
``.jpg``, ``.jpeg``, ``.bmp``), without one trailing *role* suffix (``_seg``,
``_gmseg``, ``_dseg``, ``_mask``, ``_label``, ``_labels``, ``_gt``, ``_pred``,
``_prediction``, ``_segmentation``, and the ``--task``'s own suffix; case-insensitive)
with its rater marker (``-manual``, ``_manual``), and without a BIDS ``_desc-<x>``
entity just before the role. Files pair when their keys are equal, so nnU-Net
(``case_001.nii.gz`` in both folders), BraTS (``BraTS_001.nii.gz`` vs
``BraTS_001_seg.nii.gz``), BIDS derivatives (``sub-01_T1w_desc-x_dseg.nii.gz``) and
SCT's labels (``sub-01_T2starw_gmseg-manual.nii.gz`` vs ``sub-01_T2starw_gmseg.nii.gz``)
all pair. BIDS cases left without a partner then pair by their entities alone, since
a strict BIDS derivative drops the raw image's suffix (``sub-01_run-1_desc-x_dseg``
pairs with ``sub-01_run-1_T2starw_gmseg-manual``).

A folder may hold several files of one case when each has a role (the gray matter
``_gmseg-manual`` and the cord ``_seg-manual``): the file whose role is the task's
suffix is chosen, else the one whose role the other side's file shares; a case that
stays ambiguous, or whose files include one without a role (an image beside its
label), is an error. Label files (with a role) in BIDS ``sub-*`` sub-folders count
as the folder's own (the raw images beside them do not); other files (``.json``, hidden files, other sub-folders) are ignored; image files
without a partner are listed as unmatched, never dropped silently. The rule is
documented in docs/metrics.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from segtool.errors import UsageError
from segtool.io.formats import split_suffix

IMAGE_SUFFIXES = (
    ".nii.gz", ".nii", ".hdr", ".mha", ".mhd", ".nrrd", ".nhdr",
    ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp",
)
ROLE_SUFFIXES = (
    "_segmentation", "_prediction", "_labels", "_label", "_gmseg", "_dseg", "_mask", "_pred", "_seg", "_gt",
)
#: a rater's marker after the role (SCT: ``_seg-manual``; its testing data: ``_gmseg_manual``)
RATER_SUFFIXES = ("-manual", "_manual")
_DESC = re.compile(r"_desc-[A-Za-z0-9-]+$")

#: {case key: {role: file}} of one folder
Keyed = dict[str, dict[str, Path]]


@dataclass
class Pairing:
    """Files of two folders: (case key, prediction, ground truth) per pair, and the rest."""

    pairs: list[tuple[str, Path, Path]]
    unmatched_pred: list[Path]
    unmatched_gt: list[Path]


def _roles(role: str | None) -> tuple[str, ...]:
    return ROLE_SUFFIXES + ((role,) if role and role.lower() not in ROLE_SUFFIXES else ())


def split_role(path: str | Path, role: str | None = None) -> tuple[str, str]:
    """(case key, role) of a label file; the role lower-cased, '' when it has none."""
    stem, _ = split_suffix(Path(path).name, IMAGE_SUFFIXES)
    rated, rater = split_suffix(stem, RATER_SUFFIXES)
    for name in ((rated, stem) if rater else (stem,)):
        key, found = split_suffix(name, _roles(role))
        if found:
            return _DESC.sub("", key) or key, found.lower()
    return stem, ""


def case_key(path: str | Path, role: str | None = None) -> str:
    """The case a label file belongs to (see this module's docstring for the rule)."""
    return split_role(path, role)[0]


def _image_files(folder: Path, below_sub: bool = False) -> Iterator[Path]:
    """The folder's image files, and those anywhere under its BIDS ``sub-*`` folders."""
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() and (below_sub or path.name.startswith("sub-")):
            yield from _image_files(path, below_sub=True)
        elif path.is_file() and split_suffix(path.name, IMAGE_SUFFIXES)[1]:
            yield path


def _label_files(folder: Path, role: str | None) -> Keyed:
    """{case key: {role: file}}; two files of one case and one role are an error.

    In ``sub-*`` folders only label files (with a role) count: a BIDS dataset's raw
    images sit there too.
    """
    keyed: Keyed = {}
    for path in _image_files(folder):
        key, found = split_role(path, role)
        if not found and path.parent != folder:
            continue
        same = keyed.setdefault(key, {})
        if found in same:
            raise UsageError(f"{folder}: files {same[found].name}, {path.name} all name case {key!r}; keep one per case")
        same[found] = path
    return keyed


def _choose(folder: Path, key: str, files: dict[str, Path], wanted: list[str | None]) -> str:
    """The role of the file of case ``key`` to evaluate, among several (see the docstring)."""
    if len(files) == 1:
        return next(iter(files))
    if "" not in files:
        for role in wanted:
            if role in files:
                return role
    names = ", ".join(p.name for p in sorted(files.values()))
    raise UsageError(
        f"{folder}: files {names} all name case {key!r}; "
        "pass --task to choose by the task's suffix, or keep one per case"
    )


def _pair_cases(preds: Keyed, gts: Keyed, dirs: tuple[Path, Path], task_role: str | None,
                out: Pairing) -> tuple[Keyed, Keyed]:
    """Add a pair per case in both to ``out`` (the case's other files as unmatched); the lone cases of each side."""
    for key in sorted(set(preds) & set(gts)):
        p, g = preds[key], gts[key]
        shared = sorted(set(p) & set(g) - {""})
        wanted = [task_role] + (shared if len(shared) == 1 else [])
        p_role = _choose(dirs[0], key, p, wanted + ([next(iter(g))] if len(g) == 1 else []))
        g_role = _choose(dirs[1], key, g, wanted + [p_role])
        out.pairs.append((key, p[p_role], g[g_role]))
        out.unmatched_pred.extend(path for r, path in p.items() if r != p_role)
        out.unmatched_gt.extend(path for r, path in g.items() if r != g_role)
    return {k: v for k, v in preds.items() if k not in gts}, {k: v for k, v in gts.items() if k not in preds}


def _entities_only(key: str) -> str:
    """A BIDS case key without its trailing suffix: ``sub-01_run-1_T2starw`` -> ``sub-01_run-1``."""
    head, _, last = key.rpartition("_")
    return head if key.startswith("sub-") and head and "-" not in last else key


def _by_entities(cases: Keyed) -> Keyed:
    """Lone cases keyed by their BIDS entities alone, where that names one case only: a strict BIDS
    derivative (``sub-01_run-1_desc-x_dseg``) drops the raw image's suffix that SCT-style labels keep."""
    groups: dict[str, list[str]] = {}
    for key in cases:
        groups.setdefault(_entities_only(key), []).append(key)
    out: Keyed = {}
    for short, keys in groups.items():
        for key in keys:
            out[short if len(keys) == 1 else key] = cases[key]
    return out


def pair_folders(pred_dir: str | Path, gt_dir: str | Path, role: str | None = None) -> Pairing:
    """Pair the label files of two folders by case key; list the unmatched ones.

    ``role``: the task's output suffix (e.g. ``_gmseg``), a role of its own and the
    one chosen where a case has several files. Cases left without a partner are then
    paired by their BIDS entities alone (``sub-01_run-1_T2starw`` with ``sub-01_run-1``).
    """
    dirs = (Path(pred_dir), Path(gt_dir))
    preds, gts = _label_files(dirs[0], role), _label_files(dirs[1], role)
    task_role = role.lower() if role else None
    out = Pairing([], [], [])
    lone_pred, lone_gt = _pair_cases(preds, gts, dirs, task_role, out)
    lone_pred, lone_gt = _pair_cases(_by_entities(lone_pred), _by_entities(lone_gt), dirs, task_role, out)
    out.unmatched_pred.extend(path for files in lone_pred.values() for path in files.values())
    out.unmatched_gt.extend(path for files in lone_gt.values() for path in files.values())
    out.pairs.sort(key=lambda pair: pair[0])
    out.unmatched_pred.sort()
    out.unmatched_gt.sort()
    return out
