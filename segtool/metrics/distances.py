"""Surface distances between two binary masks, and the metrics summarising them.

Distances are exact Euclidean nearest-neighbour distances between the two surfaces
(:mod:`segtool.metrics.surfaces`), computed on the bounding box of the two masks
only (:mod:`segtool.metrics.nearest`). HD95 is max(P95(pred->gt), P95(gt->pred)) per
direction: numpy's 'linear' percentile in voxel mode (as MONAI), the area-weighted
nearest rank in surfel mode (as DeepMind's compute_robust_hausdorff). Empty masks:
both empty -> every distance 0; exactly one empty -> every distance ``inf`` (or
``empty_distance`` when given).
"""

from __future__ import annotations

import math

import numpy as np

from segtool.metrics.checks import as_spacing, check_binary, check_surface
from segtool.metrics.nearest import directed
from segtool.metrics.results import DistanceMetrics, SurfaceDistances
from segtool.metrics.surfaces import surfel_area_table, surfel_surface, voxel_surface

Box = tuple[slice, ...]


def bbox_of(mask: np.ndarray) -> Box | None:
    """Smallest box holding every True of `mask`, or None (scipy.ndimage.find_objects)."""
    from scipy import ndimage

    found = ndimage.find_objects(np.asarray(mask, dtype=bool).view(np.uint8), max_label=1)
    return found[0] if found else None


def union_box(*boxes: Box | None) -> Box | None:
    """Smallest box holding every given box (None: no box)."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(
        slice(min(b[i].start for b in boxes), max(b[i].stop for b in boxes)) for i in range(len(boxes[0]))
    )


def surface_distances_in_box(
    pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...], surface: str
) -> SurfaceDistances:
    """Surface distances of two binary masks already cropped to their joint bounding box."""
    sp = np.asarray(spacing, dtype=np.float64)
    if surface == "voxel":
        sa, sb = voxel_surface(pred), voxel_surface(gt)
        d_pg, d_gp, _, _ = directed(sa, sb, sp)
        return SurfaceDistances(d_pg, d_gp, np.ones(d_pg.size), np.ones(d_gp.size), "voxel")
    check_surface(surface, pred.ndim)
    table = surfel_area_table(spacing)
    sa, wa = surfel_surface(pred, table)
    sb, wb = surfel_surface(gt, table)
    d_pg, d_gp, _, _ = directed(sa, sb, sp)
    return SurfaceDistances(d_pg, d_gp, wa, wb, "surfel")


def surface_distances(pred, gt, spacing=None, surface: str = "voxel") -> SurfaceDistances:
    """Directed surface distances between two binary masks (any truthy value is foreground).

    The work is done on the bounding box of the two masks only; distances are exact.
    """
    pred, gt = check_binary(pred, gt)
    spacing = as_spacing(spacing, pred.ndim)
    check_surface(surface, pred.ndim)
    box = union_box(bbox_of(pred), bbox_of(gt))
    if box is None:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty, surface)
    return surface_distances_in_box(pred[box], gt[box], spacing, surface)


def empty_surface_distances(n_pred: int, n_gt: int, surface: str) -> SurfaceDistances:
    """Stand-in distances when at least one mask is empty: nothing to measure.

    The non-empty side gets one infinite distance so that `SurfaceDistances.empty`
    names the empty side; summarise_distances never looks at the values.
    """
    def side(n: int) -> np.ndarray:
        return np.full(1 if n else 0, np.inf)

    dp, dg = side(n_pred), side(n_gt)
    return SurfaceDistances(dp, dg, np.ones(dp.size), np.ones(dg.size), surface)


def _percentile(d: np.ndarray, w: np.ndarray, q: float, surface: str) -> float:
    if surface == "voxel":
        return float(np.percentile(d, q))  # numpy 'linear' (MONAI)
    # area-weighted nearest rank: the smallest distance whose cumulative area fraction
    # reaches q/100 (DeepMind's compute_robust_hausdorff). Only the order of distinct
    # distances matters, so the many zeros (shared elements) are summed, not sorted.
    total = np.sum(w)
    zero = d == 0
    below = np.sum(w[zero])
    if below / total >= q / 100.0:
        return 0.0
    rest = ~zero
    dr, wr = d[rest], w[rest]
    order = np.argsort(dr, kind="stable")
    cum = (below + np.cumsum(wr[order])) / total
    idx = int(np.searchsorted(cum, q / 100.0))
    return float(dr[order][min(idx, dr.size - 1)])


def summarise_distances(
    sd: SurfaceDistances,
    tolerance: float = 1.0,
    percentile: float = 95.0,
    empty_distance: float | None = None,
) -> DistanceMetrics:
    """HD, HD-percentile, ASSD, directed means, MHD and NSD from surface distances."""
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    common = dict(tolerance=float(tolerance), percentile=float(percentile), surface=sd.surface, empty=sd.empty)
    if sd.empty == "both":
        return DistanceMetrics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, **common)
    if sd.empty is not None:
        value = math.inf if empty_distance is None else float(empty_distance)
        return DistanceMetrics(
            value, value, value, value, value, value, 0.0, **common, penalised=empty_distance is not None
        )
    d_pg, d_gp, w_p, w_g = sd.pred_to_gt, sd.gt_to_pred, sd.pred_weights, sd.gt_weights
    sum_p, sum_g = float(np.sum(w_p)), float(np.sum(w_g))
    mean_pg = float(np.sum(d_pg * w_p)) / sum_p
    mean_gp = float(np.sum(d_gp * w_g)) / sum_g
    hd = max(float(d_pg.max()), float(d_gp.max()))
    hdq = max(_percentile(d_pg, w_p, percentile, sd.surface), _percentile(d_gp, w_g, percentile, sd.surface))
    assd_ = (mean_pg * sum_p + mean_gp * sum_g) / (sum_p + sum_g)
    nsd = (float(np.sum(w_p[d_pg <= tolerance])) + float(np.sum(w_g[d_gp <= tolerance]))) / (sum_p + sum_g)
    return DistanceMetrics(hd, hdq, assd_, mean_pg, mean_gp, max(mean_pg, mean_gp), nsd, **common)


def distance_metrics(
    pred,
    gt,
    spacing=None,
    *,
    tolerance: float = 1.0,
    percentile: float = 95.0,
    surface: str = "voxel",
    empty_distance: float | None = None,
) -> DistanceMetrics:
    """All surface-distance metrics of two binary masks."""
    return summarise_distances(surface_distances(pred, gt, spacing, surface), tolerance, percentile, empty_distance)


def hausdorff(pred, gt, spacing=None, surface: str = "voxel") -> float:
    return distance_metrics(pred, gt, spacing, surface=surface).hd


def hausdorff95(pred, gt, spacing=None, surface: str = "voxel", percentile: float = 95.0) -> float:
    return distance_metrics(pred, gt, spacing, surface=surface, percentile=percentile).hd95


def assd(pred, gt, spacing=None, surface: str = "voxel") -> float:
    return distance_metrics(pred, gt, spacing, surface=surface).assd


def modified_hausdorff(pred, gt, spacing=None, surface: str = "voxel") -> float:
    return distance_metrics(pred, gt, spacing, surface=surface).mhd


def surface_dice(pred, gt, spacing=None, tolerance: float = 1.0, surface: str = "voxel") -> float:
    return distance_metrics(pred, gt, spacing, tolerance=tolerance, surface=surface).nsd
