"""Evaluating label files: pairing folders, per-case metrics, aggregation, tables, JSON, CSV.

The metric definitions live in :mod:`segtool.metrics` (numpy only); this module reads
files (``segtool.io.read_labels``), checks that prediction and ground truth share a
grid (or resamples the prediction onto the ground-truth grid), pairs the files of two
folders by case name, aggregates over cases and renders the results. No click here.

Folder pairing rule (documented in docs/metrics.md)
---------------------------------------------------
A file's *case key* is its name without the image suffix (``.nii.gz``, ``.nii``,
``.hdr``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``, ``.png``, ``.tif``, ``.tiff``,
``.jpg``, ``.jpeg``, ``.bmp``) and without one trailing role suffix (``_seg``,
``_dseg``, ``_mask``, ``_label``, ``_labels``, ``_gt``, ``_pred``, ``_prediction``,
``_segmentation``; case-insensitive). Files pair when their keys are equal, so
nnU-Net (``case_001.nii.gz`` in both folders), BraTS (``BraTS_001.nii.gz`` vs
``BraTS_001_seg.nii.gz``) and BIDS derivatives (``sub-01_T1w_dseg.nii.gz``) all pair.
Other files (``.json``, ``.pkl``, hidden files, sub-folders) are ignored; image files
without a partner are listed as unmatched, never dropped silently.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from segtool.errors import GeometryError, LabelError, SegtoolError, UsageError, describe_unexpected
from segtool.metrics import (
    COUNT_KEYS,
    DISTANCE_KEYS,
    METRIC_KEYS,
    LabelMetrics,
    empty_surface_distances,
    evaluate,
    overlap_from_counts,
    summarise_distances,
)

#: largest difference (mm, or direction-cosine units) allowed between the two affines
AFFINE_ATOL = 1e-3

IMAGE_SUFFIXES = (
    ".nii.gz", ".nii", ".hdr", ".mha", ".mhd", ".nrrd", ".nhdr",
    ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp",
)
ROLE_SUFFIXES = ("_segmentation", "_prediction", "_labels", "_label", "_dseg", "_mask", "_pred", "_seg", "_gt")

#: metrics shown in the compact tables (JSON and CSV always carry every metric)
CASE_TABLE_KEYS = ("dice", "hd95", "assd", "nsd")
SUMMARY_TABLE_KEYS = ("dice", "iou", "precision", "recall", "hd", "hd95", "assd", "mhd", "nsd")
STATISTICS = ("mean", "std", "median")

HEADERS = {
    "dice": "Dice",
    "iou": "IoU",
    "precision": "Precision",
    "recall": "Recall",
    "specificity": "Specificity",
    "volume_pred": "Vol pred",
    "volume_gt": "Vol GT",
    "volume_difference": "ΔVol",
    "relative_volume_difference": "ΔVol rel",
    "hd": "HD",
    "hd95": "HD95",
    "assd": "ASSD",
    "msd_pred_to_gt": "MSD pred→GT",
    "msd_gt_to_pred": "MSD GT→pred",
    "mhd": "MHD",
    "nsd": "NSD",
}


# --------------------------------------------------------------------------- options and results


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

    def as_dict(self) -> dict:
        return {
            "case": self.case,
            "pred": str(self.pred),
            "gt": str(self.gt),
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "unit": self.unit,
            "resampled": self.resampled,
            "metrics": [m.as_dict(json_safe=True) for m in self.metrics],
        }


@dataclass
class Pairing:
    pairs: list[tuple[str, Path, Path]]
    unmatched_pred: list[Path]
    unmatched_gt: list[Path]


# --------------------------------------------------------------------------- pairing


def _image_suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def case_key(path: str | Path) -> str:
    """The case a label file belongs to (see the module docstring for the rule)."""
    name = Path(path).name
    suffix = _image_suffix(name)
    stem = name[: -len(suffix)] if suffix else name
    lower = stem.lower()
    for role in ROLE_SUFFIXES:
        if lower.endswith(role) and len(stem) > len(role):
            return stem[: -len(role)]
    return stem


def _label_files(folder: Path) -> dict[str, Path]:
    keyed: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or _image_suffix(path.name) is None:
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


# --------------------------------------------------------------------------- reading and grids


def _read_labels(path: Path):
    from segtool.io import read_labels

    return read_labels(path)


def _affine_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).max())


def resample_nearest(
    pred: np.ndarray, pred_affine: np.ndarray, gt_shape: Sequence[int], gt_affine: np.ndarray
) -> np.ndarray:
    """Map a label image onto another grid with nearest-neighbour interpolation.

    Each ground-truth voxel takes the label of the prediction voxel nearest to its
    centre (via ``inv(pred_affine) @ gt_affine``); voxels outside the prediction are 0.
    """
    from scipy import ndimage

    nd = pred.ndim
    to_pred = np.linalg.inv(np.asarray(pred_affine, dtype=float)) @ np.asarray(gt_affine, dtype=float)
    matrix = to_pred[:nd, :nd]
    offset = to_pred[:nd, 3]
    return ndimage.affine_transform(
        pred, matrix, offset=offset, output_shape=tuple(int(s) for s in gt_shape), order=0,
        mode="constant", cval=0, prefilter=False,
    )


def load_pair(pred_path: Path, gt_path: Path, resample: bool = False):
    """Read PRED and GT; returns (pred array, gt array, spacing, unit, resampled, gt Volume).

    Raises GeometryError when the grids differ (shape, or affine beyond AFFINE_ATOL)
    and ``resample`` is False.
    """
    gt_vol = _read_labels(gt_path)
    pred_vol = _read_labels(pred_path)
    pred, gt = pred_vol.array[0], gt_vol.array[0]
    if pred.ndim != gt.ndim:
        raise GeometryError(f"{pred_path} is {pred.ndim}D but {gt_path} is {gt.ndim}D")
    resampled = False
    shape_differs = pred.shape != gt.shape
    diff = _affine_difference(pred_vol.affine, gt_vol.affine)
    if shape_differs or diff > AFFINE_ATOL:
        if not resample:
            what = (
                f"shape {'x'.join(map(str, pred.shape))} vs {'x'.join(map(str, gt.shape))}"
                if shape_differs
                else f"affines differ by up to {diff:.4g} (tolerance {AFFINE_ATOL:g})"
            )
            raise GeometryError(
                f"{pred_path} and {gt_path} are on different grids: {what}; "
                "pass --resample-pred to map the prediction onto the ground-truth grid"
            )
        pred = resample_nearest(pred, pred_vol.affine, gt.shape, gt_vol.affine)
        resampled = True
    unit = "px" if getattr(gt_vol, "kind", "") == "photo" else "mm"
    return pred, gt, tuple(gt_vol.spacing), unit, resampled, gt_vol


# --------------------------------------------------------------------------- evaluation


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
    if options.strict_labels and options.labels is not None:
        _check_known_labels(pred_path, pred, gt_path, gt, options)
    metrics = evaluate(
        pred, gt, spacing,
        labels=options.labels, regions=options.regions, tolerance=options.tolerance,
        percentile=options.percentile, surface=options.surface, empty_distance=options.empty_distance,
    )
    result = CaseResult(
        case or case_key(gt_path), pred_path, gt_path, tuple(gt.shape), spacing, unit, resampled, metrics
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
            raise LabelError(
                f"{path}: label value{'s' if len(found) > 1 else ''} {shown} not known to {options.labels_source} "
                f"({names}); pass --labels to report {'them' if len(found) > 1 else 'it'} as extra classes"
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


# --------------------------------------------------------------------------- aggregation


@dataclass
class Summary:
    """Statistics of each metric of one label or region over the cases."""

    name: str
    labels: tuple[int, ...]
    region: bool
    n_cases: int
    stats: dict[str, dict[str, float | int]]

    def as_dict(self, json_safe: bool = True) -> dict:
        stats = {
            key: {k: (_json_number(v) if json_safe else v) for k, v in s.items()} for key, s in self.stats.items()
        }
        return {
            "name": self.name, "labels": list(self.labels), "region": self.region,
            "n_cases": self.n_cases, "stats": stats,
        }


def _stats(values: Sequence[float]) -> dict[str, float | int]:
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    n_inf = int(np.isinf(arr).sum())
    if finite.size:
        mean, std, median = float(finite.mean()), float(finite.std()), float(np.median(finite))
    elif n_inf:
        mean = median = math.inf  # every value infinite (only distances can be)
        std = math.nan
    else:
        mean = std = median = math.nan
    return {"mean": mean, "std": std, "median": median, "n": int(finite.size), "n_inf": n_inf}


def aggregate(cases: Iterable[CaseResult]) -> list[Summary]:
    """Mean, population std and median of every metric per label/region, over finite values.

    Infinite values (one mask empty) are counted in ``n_inf`` and left out of the
    statistics, which are over the ``n`` finite values.
    """
    order: list[tuple[str, tuple[int, ...], bool]] = []
    rows: dict[tuple[str, tuple[int, ...], bool], list[LabelMetrics]] = {}
    for case in cases:
        for m in case.metrics:
            key = (m.name, m.labels, m.region)
            if key not in rows:
                order.append(key)
                rows[key] = []
            rows[key].append(m)
    out = []
    for key in order:
        ms = rows[key]
        flat = [m.as_dict() for m in ms]
        stats = {k: _stats([row[k] for row in flat]) for k in METRIC_KEYS if k in flat[0]}
        out.append(Summary(key[0], key[1], key[2], len(ms), stats))
    return out


# --------------------------------------------------------------------------- rendering


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt(value) -> str:
    """A metric for a table: 4 significant digits, 'inf', '-' for undefined."""
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}"


def pair_report(case: CaseResult, options: EvalOptions) -> dict:
    """The JSON document of `segtool evaluate PRED GT`."""
    return {"mode": "pair", **options.as_dict(), **case.as_dict()}


def folder_report(
    cases: list[CaseResult],
    summary: list[Summary],
    pairing: Pairing,
    options: EvalOptions,
    pred_dir,
    gt_dir,
    failures: Sequence[FailedCase] = (),
) -> dict:
    """The JSON document of `segtool evaluate PRED_DIR GT_DIR` (pairs that failed under ``failed``)."""
    return {
        "mode": "folder",
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
        **options.as_dict(),
        "cases": [c.as_dict() for c in cases],
        "summary": [s.as_dict() for s in summary],
        "unmatched": {"pred": [str(p) for p in pairing.unmatched_pred], "gt": [str(p) for p in pairing.unmatched_gt]},
        "failed": [f.as_dict() for f in failures],
    }


CSV_COLUMNS = (
    ("case", "statistic", "name", "labels", "region")
    + METRIC_KEYS
    + ("unit", "tolerance", "surface", "empty", "penalised")
    + COUNT_KEYS
    + ("pred", "gt")
)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)


def write_csv(
    path: str | Path,
    cases: Sequence[CaseResult],
    summary: Sequence[Summary] = (),
    options: EvalOptions | None = None,
) -> None:
    """One row per case and label/region, then one row per label/region and statistic.

    Infinite distances are written as ``inf``; undefined statistics are left empty.
    The file is written beside ``path`` under a temporary name, then moved into place.
    """
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".seg-tmp-", suffix=".csv", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            _write_csv_rows(fh, cases, summary, options)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_csv_rows(
    fh, cases: Sequence[CaseResult], summary: Sequence[Summary], options: EvalOptions | None
) -> None:
    unit = cases[0].unit if cases else ""
    writer = csv.writer(fh)
    writer.writerow(CSV_COLUMNS)
    for case in cases:
        for m in case.metrics:
            row = m.as_dict()
            row.update(case=case.case, statistic="", labels="+".join(map(str, m.labels)), unit=case.unit,
                       pred=str(case.pred), gt=str(case.gt))
            writer.writerow([_csv_value(row.get(col)) for col in CSV_COLUMNS])
    for s in summary:
        for stat in STATISTICS + ("n", "n_inf"):
            row = {key: s.stats[key][stat] for key in s.stats}
            row.update(case="", statistic=stat, name=s.name, labels="+".join(map(str, s.labels)), region=s.region,
                       unit=unit, tolerance=options.tolerance if options else None,
                       surface=options.surface if options else None)
            writer.writerow([_csv_value(row.get(col)) for col in CSV_COLUMNS])


def _empty_note(m: LabelMetrics) -> str:
    if m.empty is None:
        return ""
    note = {"both": "both", "pred": "pred", "gt": "GT"}[m.empty]
    if m.distance is not None and m.distance.penalised:
        note += f" (= {m.distance.hd:g})"
    return note


def pair_table(case: CaseResult, options: EvalOptions):
    """A rich table of one case: a row per metric, a column per label/region."""
    from rich.table import Table

    unit = case.unit
    title = f"segtool evaluate: {case.pred.name} vs {case.gt.name}"
    caption = (
        f"distances in {unit}; surface={options.surface}; NSD tolerance {options.tolerance:g} {unit}"
        + ("; prediction resampled onto the GT grid" if case.resampled else "")
    )
    table = Table(title=title, caption=caption)
    table.add_column("metric", style="bold", no_wrap=True)
    for m in case.metrics:
        table.add_column(m.name, justify="right", overflow="fold")
    unit_of = {"volume_pred": f" {unit}³", "volume_gt": f" {unit}³", "volume_difference": f" {unit}³"}
    for key in METRIC_KEYS:
        if key in DISTANCE_KEYS + ("nsd",) and case.metrics and case.metrics[0].distance is None:
            continue
        header = HEADERS[key] + unit_of.get(key, "")
        table.add_row(header, *(fmt(m.as_dict().get(key)) for m in case.metrics))
    notes = [_empty_note(m) for m in case.metrics]
    if any(notes):
        table.add_row("empty mask", *notes)
    return table


def cases_table(cases: Sequence[CaseResult], options: EvalOptions):
    """A compact rich table: a row per case and label/region, a few key metrics."""
    from rich.table import Table

    unit = cases[0].unit if cases else "mm"
    table = Table(title="segtool evaluate: cases", caption=f"distances in {unit}; all metrics in --json / --csv")
    table.add_column("case", no_wrap=True, min_width=max([4] + [len(c.case) for c in cases]))
    table.add_column("label", no_wrap=True, min_width=max([5] + [len(m.name) for c in cases for m in c.metrics]))
    for key in CASE_TABLE_KEYS:
        table.add_column(HEADERS[key], justify="right")
    table.add_column("empty mask")
    for case in cases:
        for i, m in enumerate(case.metrics):
            row = m.as_dict()
            cells = (fmt(row.get(k)) for k in CASE_TABLE_KEYS)
            table.add_row(case.case if i == 0 else "", m.name, *cells, _empty_note(m))
    return table


def summary_table(summary: Sequence[Summary], unit: str = "mm"):
    """A rich table of mean / std / median per label/region and key metric."""
    from rich.table import Table

    table = Table(
        title="segtool evaluate: summary over cases",
        caption=(
            f"distances in {unit}; statistics over the n finite values, n_inf cases with an empty mask "
            "left out; population std; all metrics in --json / --csv"
        ),
    )
    table.add_column("label", no_wrap=True, min_width=max([5] + [len(s.name) for s in summary]))
    table.add_column("metric", no_wrap=True)
    for stat in STATISTICS:
        table.add_column(stat, justify="right")
    table.add_column("n", justify="right")
    table.add_column("n_inf", justify="right")
    for s in summary:
        keys = [k for k in SUMMARY_TABLE_KEYS if k in s.stats]
        for j, key in enumerate(keys):
            st = s.stats[key]
            table.add_row(
                s.name if j == 0 else "", HEADERS[key], *(fmt(st[stat]) for stat in STATISTICS),
                str(st["n"]), str(st["n_inf"]), end_section=j == len(keys) - 1,
            )
    return table
