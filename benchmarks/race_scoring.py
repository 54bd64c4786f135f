"""Scoring the race's held-out predictions, as ``segtool evaluate PRED_DIR GT_DIR --task TASK --json`` scores them.

The folders it reads (each case as ``CASE + suffix``: the label files, remapped as ``segtool train`` reads them,
and each side's predictions on the case's own grid and format), the names it pairs them by, and the numbers from
its report: per case, pooled per subject (2·ΣTP / (2·ΣTP + ΣFP + ΣFN), no HD95) and the means. Running
``segtool evaluate`` itself is ``nnunet_race.evaluate_folder``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence


def image_suffix(path: Path) -> str:
    """'.nii.gz' for 'a.b_seg.nii.gz'."""
    from segtool.io.formats import TRAINING_SUFFIXES, split_suffix

    return split_suffix(Path(path).name, TRAINING_SUFFIXES)[1] or Path(path).suffix


def eval_names(suffixes: Mapping[str, str]) -> dict[str, str]:
    """The key `segtool evaluate` pairs a ``CASE + suffix`` file by -> the case (an error if two cases share one)."""
    from segtool.evaluation.pairing import case_key

    out: dict[str, str] = {}
    for case, suffix in suffixes.items():
        key = case_key(f"{case}{suffix}")
        if key in out:
            raise RuntimeError(f"cases {out[key]!r} and {case!r} both pair as {key!r} in segtool evaluate")
        out[key] = case
    return out


def prediction_files(folder: Path, names: Iterable[str], file_ending: str) -> tuple[dict[str, Path], list[str]]:
    """nnU-Net's prediction of each case (its identifier is the case name + file ending) and the missing ones."""
    found, missing = {}, []
    for name in names:
        path = Path(folder) / f"{name}{file_ending}"
        (found.__setitem__(name, path) if path.is_file() else missing.append(name))
    return found, missing


def case_array(array, ndim: int):
    """An nnU-Net prediction's voxels on the case's own grid: a 2D case was written as voxels (cols, rows, 1)."""
    import numpy as np

    array = np.asarray(array)
    if ndim == 2:
        if array.ndim != 3 or array.shape[2] != 1:
            raise ValueError(f"a 2D case's nnU-Net prediction should be (cols, rows, 1), got {array.shape}")
        return np.ascontiguousarray(array[:, :, 0].T)
    return array


def write_gt_folder(dataset, cases: Iterable[str], labels_map, folder: Path) -> dict[str, str]:
    """GT_DIR for `segtool evaluate`: ``CASE + suffix``, each held-out case's label file (remapped when the
    task maps labels, as `segtool train` reads it); each case's suffix."""
    from segtool.io import read_labels, write_labels
    from segtool.training.prepare import remap_labels

    folder.mkdir(parents=True, exist_ok=True)
    by_name = {c.name: c for c in dataset.cases}
    suffixes = {}
    for name in cases:
        case = by_name[name]
        suffixes[name] = image_suffix(case.label)
        target = folder / f"{name}{suffixes[name]}"
        if labels_map is None:
            target.symlink_to(case.label.resolve())
        else:
            volume = read_labels(case.label)
            write_labels(remap_labels(volume.array[0], labels_map), volume, target)
    return suffixes


def nnunet_predictions_to_folder(spec, dataset, predictions: Mapping[str, Path], folder: Path,
                                 suffixes: Mapping[str, str]) -> None:
    """nnU-Net's NIfTI predictions back on each case's own grid and format, as ``folder/CASE + suffix``."""
    import nibabel as nib
    import numpy as np

    from segtool.io import read_labels, write_labels

    folder.mkdir(parents=True, exist_ok=True)
    by_name = {c.name: c for c in dataset.cases}
    for name, path in predictions.items():
        reference = read_labels(by_name[name].label)
        array = case_array(np.asanyarray(nib.load(path).dataobj), spec.ndim)
        if tuple(array.shape) != tuple(reference.spatial_shape):
            raise RuntimeError(f"{path}: nnU-Net's prediction {array.shape} is not on case {name!r}'s grid "
                               f"{tuple(reference.spatial_shape)}")
        write_labels(array.astype(np.uint8 if array.max(initial=0) < 256 else np.uint16), reference,
                     folder / f"{name}{suffixes[name]}")


def predictions_to_folder(side: str, spec, dataset, predictions: Mapping[str, Path], folder: Path,
                          suffixes: Mapping[str, str]) -> None:
    """A side's predictions as ``folder/CASE + suffix``: nnU-Net's put back on the cases' grids, segtool's linked."""
    if side == "nnunet":
        nnunet_predictions_to_folder(spec, dataset, predictions, folder, suffixes)
    else:
        folder.mkdir(parents=True)
        for name, path in predictions.items():
            (folder / f"{name}{image_suffix(path)}").symlink_to(Path(path).resolve())


def scores_from_report(report: dict, key_to_case: Mapping[str, str]) -> dict:
    """{case: {name: {dice, hd95, tp, fp, fn}}} from `segtool evaluate --json` (folder mode); both empty: None."""
    out = {}
    for row in report.get("cases", []):
        scores = {}
        for m in row["metrics"]:
            hd95 = math.inf if "hd95" in (m.get("infinite") or []) else m.get("hd95")
            both_empty = m.get("empty") == "both"
            scores[m["name"]] = {"dice": None if both_empty else m.get("dice"), "hd95": None if both_empty else hd95,
                                 "tp": m.get("tp"), "fp": m.get("fp"), "fn": m.get("fn")}
        out[key_to_case.get(row["case"], row["case"])] = scores
    return out


def pool_by_subject(per_case: Mapping[str, Mapping], group_by: str) -> dict:
    """Per subject and name, Dice of the summed TP/FP/FN of its cases (no HD95), as segtool's validation pools."""
    from segtool.metrics import overlap_from_counts
    from segtool.training.datasets import group_key

    sums: dict[str, dict[str, list[int]]] = {}
    for case, scores in per_case.items():
        subject = sums.setdefault(group_key(case, group_by), {})
        for name, s in scores.items():
            total = subject.setdefault(name, [0, 0, 0])
            for i, key in enumerate(("tp", "fp", "fn")):
                total[i] += int(s.get(key) or 0)
    return {subject: {name: {"dice": overlap_from_counts(tp, fp, fn, 0, 1.0).dice if tp + fp + fn else None,
                             "hd95": None, "tp": tp, "fp": fp, "fn": fn}
                      for name, (tp, fp, fn) in names.items()}
            for subject, names in sorted(sums.items())}


def means(per_case: Mapping[str, Mapping], names: Sequence[str]) -> dict:
    """Per name: mean Dice (cases where it is defined), mean finite HD95, and how many HD95 were infinite."""
    out = {}
    for name in names:
        rows = [s[name] for s in per_case.values() if name in s]
        dice = [r["dice"] for r in rows if r.get("dice") is not None]
        finite = [r["hd95"] for r in rows if r.get("hd95") is not None and math.isfinite(r["hd95"])]
        out[name] = {"dice": sum(dice) / len(dice) if dice else None,
                     "hd95": sum(finite) / len(finite) if finite else None, "cases": len(dice),
                     "missed": sum(1 for r in rows if r.get("hd95") is not None and not math.isfinite(r["hd95"]))}
    return out


def side_scores(report: dict, suffixes: Mapping[str, str], group_by: str | None, names: Sequence[str]) -> dict:
    """A side's scores from its `segtool evaluate` report: per case (per subject with ``group_by``) and the means."""
    per_case = scores_from_report(report, eval_names(suffixes))
    if group_by:
        per_case = pool_by_subject(per_case, group_by)
    return {"per_case": per_case, "mean": means(per_case, names), "unmatched": report.get("unmatched"),
            "failed": report.get("failed")}
