"""Evaluating one pair of label files, or every pair of two folders: options and per-case results.

The metric definitions live in :mod:`segtool.metrics` (numpy only); this module
reads the files (:mod:`segtool.evaluation.loading`), applies the options and keeps
every case reporting the same labels. No click here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from segtool.errors import LabelError, SegtoolError, UsageError, describe_unexpected
from segtool.evaluation.loading import load_pair
from segtool.evaluation.masks import read_masks_as_one_label
from segtool.evaluation.pairing import Pairing, case_key
from segtool.labels_map import renumber
from segtool.metrics import LabelMetrics, empty_surface_distances, evaluate, overlap_from_counts, summarise_distances

@dataclass(frozen=True)
class EvalOptions:
    """What to compute; shared by every case of a run."""

    labels: Mapping[int, str] | None = None  # None: every non-zero label in the files
    regions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    tolerance: float = 1.0
    percentile: float = 95.0
    surface: str = "voxel"
    empty_distance: float | None = None
    resample_pred: bool = False
    #: refuse a case whose files hold a label outside ``labels`` (``--task`` without ``--labels``)
    strict_labels: bool = False
    #: where ``labels`` came from, for the message of a strict refusal (e.g. "task 'spinal-gm'")
    labels_source: str = "--labels"
    #: the ground truth's own values -> the labels scored (``--labels-map``; values not named: background)
    gt_labels_map: Mapping[int, int] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.tolerance, (int, float)) and math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise UsageError(f"--tolerance must be a finite number >= 0, got {self.tolerance}")
        if not (math.isfinite(self.percentile) and 0 <= self.percentile <= 100):
            raise UsageError(f"percentile must lie in [0, 100], got {self.percentile}")
        if self.empty_distance is not None and not (
            math.isfinite(self.empty_distance) and self.empty_distance >= 0
        ):
            raise UsageError(f"--empty-distance must be a finite number >= 0, got {self.empty_distance}")
        if self.labels is not None and any(int(k) < 1 for k in self.labels):
            raise UsageError("labels must be positive integers (0 is the background)")

    def as_dict(self) -> dict:
        return {
            "surface": self.surface,
            "tolerance": self.tolerance,
            "percentile": self.percentile,
            "empty_distance": self.empty_distance,
            "resample_pred": self.resample_pred,
            "gt_labels_map": None if self.gt_labels_map is None
            else {str(k): int(v) for k, v in sorted(self.gt_labels_map.items())},
        }


@dataclass
class CaseResult:
    case: str
    pred: Path
    gt: Path
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    unit: str  # "mm" or "px"
    resampled: bool
    metrics: list[LabelMetrics]
    #: mask values scored as a label (see segtool.evaluation.masks), e.g. {"gt": {"255": 1}}
    read_as: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def volume_unit(self) -> str:
        """The unit of the volumes: mm³ (mm² for a 2D grid), px² for photos."""
        return f"{self.unit}{'²' if len(self.shape) == 2 else '³'}"

    def as_dict(self) -> dict:
        return {
            "case": self.case,
            "pred": str(self.pred),
            "gt": str(self.gt),
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "unit": self.unit,
            "volume_unit": self.volume_unit,
            "resampled": self.resampled,
            "read_as": self.read_as,
            "metrics": [m.as_dict(json_safe=True) for m in self.metrics],
        }


#: Called after each case with (result, prediction on the GT grid, GT Volume), e.g. for QC pictures.
OnCase = Callable[["CaseResult", np.ndarray, Any], None]


def evaluate_pair(
    pred_path: str | Path,
    gt_path: str | Path,
    options: EvalOptions,
    case: str | None = None,
    on_case: OnCase | None = None,
) -> CaseResult:
    """Every metric of one prediction file against one ground-truth file."""
    pred_path, gt_path = Path(pred_path), Path(gt_path)
    pred, gt, spacing, unit, resampled, gt_volume = load_pair(pred_path, gt_path, options.resample_pred)
    as_read = gt
    if options.gt_labels_map is not None:
        gt = renumber(gt, options.gt_labels_map)
    pred, gt, read_as = read_masks_as_one_label(pred, gt, options.labels)
    if gt is not as_read:
        gt_volume.array = gt[np.newaxis]  # what on_case draws: the labels as scored
    if options.strict_labels and options.labels is not None:
        _check_known_labels(pred_path, pred, gt_path, gt, options)
    metrics = evaluate(
        pred, gt, spacing,
        labels=options.labels, regions=options.regions, tolerance=options.tolerance,
        percentile=options.percentile, surface=options.surface, empty_distance=options.empty_distance,
    )
    result = CaseResult(
        case or case_key(gt_path), pred_path, gt_path, tuple(gt.shape), spacing, unit, resampled, metrics, read_as
    )
    if on_case is not None:
        on_case(result, pred, gt_volume)
    return result


def _check_known_labels(
    pred_path: Path, pred: np.ndarray, gt_path: Path, gt: np.ndarray, options: EvalOptions
) -> None:
    """Refuse label values the options do not name, on either side (never drop them silently)."""
    known = set(int(k) for k in options.labels or {})
    for path, array in ((gt_path, gt), (pred_path, pred)):
        found = [int(v) for v in np.unique(array) if v != 0 and int(v) not in known]
        if found:
            shown = ", ".join(map(str, found[:8])) + (", ..." if len(found) > 8 else "")
            names = ", ".join(f"{k}={v}" for k, v in sorted((options.labels or {}).items()))
            them = "them" if len(found) > 1 else "it"
            remedy = f"pass --labels to report {them} as extra classes"
            if path == gt_path and options.gt_labels_map is None:
                remedy += f", or --labels-map to map {them} to the labels scored (e.g. {found[0]}:1)"
            raise LabelError(
                f"{path}: label value{'s' if len(found) > 1 else ''} {shown} not known to {options.labels_source} "
                f"({names}); {remedy}"
            )


@dataclass
class FailedCase:
    """A folder-mode pair that could not be evaluated; the other pairs still are."""

    case: str
    pred: Path
    gt: Path
    error: str

    def as_dict(self) -> dict:
        return {"case": self.case, "pred": str(self.pred), "gt": str(self.gt), "error": self.error}


def evaluate_folders(
    pairing: Pairing,
    options: EvalOptions,
    progress: Callable[[int, int, str], None] | None = None,
    on_case: OnCase | None = None,
    failures: list[FailedCase] | None = None,
) -> list[CaseResult]:
    """Evaluate every pair; cases then report the same labels (see fill_missing_labels).

    With a ``failures`` list, a pair that cannot be evaluated (unreadable, on another
    grid, unknown labels...) is appended to it and the other pairs go on; without,
    the first such error is raised.
    """
    results = []
    for i, (key, pred_path, gt_path) in enumerate(pairing.pairs):
        if progress is not None:
            progress(i, len(pairing.pairs), key)
        try:
            results.append(evaluate_pair(pred_path, gt_path, options, case=key, on_case=on_case))
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad pair fails its row only
            if failures is None:
                raise
            message = exc.one_line() if isinstance(exc, SegtoolError) else f"{key}: {describe_unexpected(exc)}"
            failures.append(FailedCase(key, pred_path, gt_path, message))
    return fill_missing_labels(results, options)


def qc_writer(qc_dir: Path, label_names: Mapping[int, str] | None, image_path: Path | None = None) -> OnCase:
    """An ``on_case`` callback drawing prediction and ground truth side by side into a QC report.

    Without ``image_path`` the masks are drawn on black; with it, on that image (which
    must share the ground truth's grid).
    """
    from segtool.io import read_volume
    from segtool.qc import qc_comparison
    from segtool.qc.render import blank_like

    def write(result: CaseResult, pred: np.ndarray, gt_volume) -> None:
        image = read_volume(image_path) if image_path is not None else blank_like(gt_volume)
        names = dict(label_names) if label_names else {int(v): str(v) for v in np.unique(gt_volume.array) if v}
        dice = {m.name: round(m.overlap.dice, 4) for m in result.metrics}
        row = {"task": "evaluate", "input": str(result.pred), "output": str(result.gt), "dice": dice}
        qc_comparison(qc_dir, image, pred, gt_volume.array[0], names, row, case_id=result.case)

    return write


def fill_missing_labels(cases: list[CaseResult], options: EvalOptions) -> list[CaseResult]:
    """Give every case a row for every label seen in any case.

    With labels read from the files, a label absent from both files of one case is
    reported there as both-empty (Dice 1, distances 0), as it would be had it been
    asked for with --labels.
    """
    if options.labels is not None or not cases:
        return cases
    seen: dict[int, str] = {}
    for case in cases:
        for m in case.metrics:
            if not m.region:
                seen.setdefault(m.labels[0], m.name)
    for case in cases:
        have = {m.labels[0] for m in case.metrics if not m.region}
        missing = [label for label in seen if label not in have]
        if not missing:
            continue
        total = int(np.prod(case.shape))
        voxel = float(np.prod(case.spacing))
        absent = summarise_distances(
            empty_surface_distances(0, 0, options.surface), options.tolerance, options.percentile
        )
        extra = [
            LabelMetrics(seen[label], (label,), overlap_from_counts(0, 0, 0, total, voxel), absent)
            for label in missing
        ]
        labels = sorted([m for m in case.metrics if not m.region] + extra, key=lambda m: m.labels[0])
        case.metrics = labels + [m for m in case.metrics if m.region]
    return cases

