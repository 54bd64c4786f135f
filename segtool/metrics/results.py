"""The result types of :mod:`segtool.metrics` and the names of their metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SURFACES = ("voxel", "surfel")

DISTANCE_KEYS = ("hd", "hd95", "assd", "msd_pred_to_gt", "msd_gt_to_pred", "mhd")
OVERLAP_KEYS = ("dice", "iou", "precision", "recall", "specificity")
VOLUME_KEYS = ("volume_pred", "volume_gt", "volume_difference", "relative_volume_difference")
COUNT_KEYS = ("tp", "fp", "fn", "tn")
#: every numeric metric of a LabelMetrics row, in display order
METRIC_KEYS = OVERLAP_KEYS + VOLUME_KEYS + DISTANCE_KEYS + ("nsd",)


@dataclass(frozen=True)
class OverlapMetrics:
    """Voxel counts and the overlap / volume metrics derived from them.

    ``tp``/``fp``/``fn``/``tn`` are voxel counts; volumes are in mm³ (pixel² or voxel
    units when no spacing is given).
    """

    tp: int
    fp: int
    fn: int
    tn: int
    voxel_volume: float
    dice: float
    iou: float
    precision: float
    recall: float
    specificity: float
    volume_pred: float
    volume_gt: float
    volume_difference: float  # volume_pred - volume_gt
    relative_volume_difference: float  # (volume_pred - volume_gt) / volume_gt


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances from every surface element of one mask to the other mask's surface.

    ``pred_to_gt[i]`` is the distance (mm) from the i-th prediction surface element to
    the nearest ground-truth surface element; ``pred_weights[i]`` is its weight (1 for
    a voxel, the area in mm² or length in mm for a surfel). Empty arrays mean an
    empty mask (no surface).
    """

    pred_to_gt: np.ndarray
    gt_to_pred: np.ndarray
    pred_weights: np.ndarray
    gt_weights: np.ndarray
    surface: str = "voxel"

    @property
    def empty(self) -> str | None:
        """'both', 'pred', 'gt' (the empty one) or None."""
        p, g = self.pred_to_gt.size == 0, self.gt_to_pred.size == 0
        if p and g:
            return "both"
        return "pred" if p else "gt" if g else None


@dataclass(frozen=True)
class DistanceMetrics:
    """Surface-distance metrics in mm (pixels without spacing); see docs/metrics.md."""

    hd: float  # Hausdorff distance (maximum)
    hd95: float  # max of the two directed percentiles
    assd: float  # average symmetric surface distance (pooled over both surfaces)
    msd_pred_to_gt: float  # mean distance from the prediction surface to the ground truth
    msd_gt_to_pred: float  # mean distance from the ground-truth surface to the prediction
    mhd: float  # modified Hausdorff distance, max of the two directed means
    nsd: float  # normalised surface Dice at `tolerance`
    tolerance: float
    percentile: float = 95.0
    surface: str = "voxel"
    empty: str | None = None  # 'both' | 'pred' | 'gt' | None
    penalised: bool = False  # True when `empty_distance` replaced inf


@dataclass(frozen=True)
class LabelMetrics:
    """All metrics for one label or region (a set of labels)."""

    name: str
    labels: tuple[int, ...]
    overlap: OverlapMetrics
    distance: DistanceMetrics | None = None
    region: bool = False

    @property
    def empty(self) -> str | None:
        o = self.overlap
        p, g = o.tp + o.fp == 0, o.tp + o.fn == 0
        if p and g:
            return "both"
        return "pred" if p else "gt" if g else None

    def as_dict(self, json_safe: bool = False) -> dict:
        """A flat dict of every metric.

        With ``json_safe`` infinite values become None and their keys are listed
        under ``"infinite"`` (JSON has no inf); NaN never occurs.
        """
        out: dict = {"name": self.name, "labels": list(self.labels), "region": self.region}
        for key in OVERLAP_KEYS + VOLUME_KEYS:
            out[key] = getattr(self.overlap, key)
        if self.distance is not None:
            for key in DISTANCE_KEYS + ("nsd",):
                out[key] = getattr(self.distance, key)
            out["tolerance"] = self.distance.tolerance
            out["surface"] = self.distance.surface
            out["penalised"] = self.distance.penalised
        for key in COUNT_KEYS:
            out[key] = getattr(self.overlap, key)
        out["empty"] = self.empty
        if json_safe:
            infinite = [k for k, v in out.items() if isinstance(v, float) and math.isinf(v)]
            for key in infinite:
                out[key] = None
            out["infinite"] = infinite
        return out
