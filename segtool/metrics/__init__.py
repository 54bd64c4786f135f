"""Segmentation metrics on numpy arrays: overlap, volume and surface distances.

Pure functions of (prediction, ground truth, spacing); numpy and scipy only (no torch,
no click), so they can be used without the CLI. Every definition, with its formula
and reference, is in ``docs/metrics.md``. One module per job:

* :mod:`~segtool.metrics.results`: the result types and metric names.
* :mod:`~segtool.metrics.overlap`: voxel counts -> Dice, IoU, precision, recall,
  specificity, volumes.
* :mod:`~segtool.metrics.surfaces`: boundary voxels (``surface="voxel"``, as MONAI
  and medpy) or marching-cubes surfels with their areas (``surface="surfel"``, as
  DeepMind surface-distance).
* :mod:`~segtool.metrics.nearest`: exact Euclidean nearest-surface distances on
  the bounding box of the two masks (a ring of grid offsets, then a k-d tree), with
  the arithmetic of scipy's distance_transform_edt(sampling=spacing).
* :mod:`~segtool.metrics.distances`: HD, HD95, ASSD, directed means, MHD and NSD
  from those distances; empty masks: both empty -> Dice 1 and every distance 0;
  exactly one empty -> Dice 0 and every distance ``inf`` (or ``empty_distance``).
* :mod:`~segtool.metrics.labels`: :func:`evaluate`, every label and region of two
  label images at once (one find_objects pass finds every label's box).
"""

from __future__ import annotations

from segtool.metrics.distances import (
    assd,
    distance_metrics,
    empty_surface_distances,
    hausdorff,
    hausdorff95,
    modified_hausdorff,
    summarise_distances,
    surface_dice,
    surface_distances,
)
from segtool.metrics.labels import evaluate
from segtool.metrics.overlap import dice, iou, overlap_from_counts, overlap_metrics, precision, recall, specificity
from segtool.metrics.results import (
    COUNT_KEYS,
    DISTANCE_KEYS,
    METRIC_KEYS,
    OVERLAP_KEYS,
    SURFACES,
    VOLUME_KEYS,
    DistanceMetrics,
    LabelMetrics,
    OverlapMetrics,
    SurfaceDistances,
)
from segtool.metrics.surfaces import surfel_area_table

__all__ = [
    "SURFACES",
    "OverlapMetrics",
    "SurfaceDistances",
    "DistanceMetrics",
    "LabelMetrics",
    "overlap_metrics",
    "overlap_from_counts",
    "empty_surface_distances",
    "surface_distances",
    "summarise_distances",
    "distance_metrics",
    "evaluate",
    "dice",
    "iou",
    "precision",
    "recall",
    "specificity",
    "hausdorff",
    "hausdorff95",
    "assd",
    "modified_hausdorff",
    "surface_dice",
    "surfel_area_table",
    "METRIC_KEYS",
    "DISTANCE_KEYS",
    "OVERLAP_KEYS",
    "VOLUME_KEYS",
    "COUNT_KEYS",
]
