"""Every metric for every label and region of two label images, in one pass.

One pass over each image finds the bounding box of every label at once
(scipy.ndimage.find_objects, on the box of the foreground only); all further work
for a label or region (voxel counts, surfaces, distances) happens inside the union
of its two boxes.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from segtool.metrics.checks import as_spacing, check_pair, check_surface
from segtool.metrics.distances import (
    Box,
    bbox_of,
    empty_surface_distances,
    summarise_distances,
    surface_distances_in_box,
    union_box,
)
from segtool.metrics.overlap import overlap_from_counts
from segtool.metrics.results import LabelMetrics

#: label values up to this are used as codes directly (no ranking of the values)
_DIRECT_CODES = 1024
#: at most this many distinct label values
_MAX_VALUES = 2048


def _nonneg_int_view(a: np.ndarray) -> np.ndarray | None:
    """`a` as a non-negative integer array when that is cheap, else None."""
    if a.dtype == bool:
        return a.view(np.uint8)
    if a.dtype.kind not in "iu":
        return None
    if a.size and a.dtype.kind == "i" and a.min() < 0:
        return None
    return a


def _max_projection(codes: np.ndarray) -> np.ndarray:
    """The maximum along the first axis (the array itself in 1-D): one pass, vectorised."""
    return codes.max(axis=0) if codes.ndim > 1 and codes.shape[0] else codes


def _compact(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, pred codes, gt codes): each label value mapped to its rank among `values`."""
    for a in (pred, gt):
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
                raise ValueError("label images must hold integers")
        elif a.dtype.kind not in "iub":
            raise ValueError(f"label images must hold integers, got dtype {a.dtype}")
    p, g = _nonneg_int_view(pred), _nonneg_int_view(gt)
    if p is not None and g is not None:
        top = max(int(p.max()) if p.size else 0, int(g.max()) if g.size else 0)
        if top < _DIRECT_CODES:
            return np.arange(top + 1), p, g
    # general path: rank the values, with the background 0 moved to code 0
    values = np.union1d(np.union1d(np.unique(pred), np.unique(gt)), [0])
    if values.size > _MAX_VALUES:
        raise ValueError(f"label images hold {values.size} distinct values; at most {_MAX_VALUES} are supported")
    i0 = int(np.searchsorted(values, 0))
    order = np.array([i0] + [i for i in range(values.size) if i != i0])
    lut = np.empty(values.size, dtype=np.int32)
    lut[order] = np.arange(values.size, dtype=np.int32)
    p = lut[np.searchsorted(values, pred)]
    g = lut[np.searchsorted(values, gt)]
    return values[order], p, g


def foreground_box(codes: np.ndarray) -> Box | None:
    """Smallest box holding every non-zero code (codes are non-negative), or None.

    A maximum projection along the first axis gives the other axes' bounds; the
    first axis' bounds come from the image cropped to those.
    """
    if codes.ndim == 1:
        return bbox_of(codes != 0)
    inner = bbox_of(_max_projection(codes) != 0)
    if inner is None:
        return None
    crop = codes[(slice(None),) + inner]
    lead = np.flatnonzero(crop.max(axis=tuple(range(1, codes.ndim))))
    return (slice(int(lead[0]), int(lead[-1]) + 1),) + inner


def label_boxes(codes: np.ndarray, k: int) -> list[Box | None]:
    """Bounding box of every code 0..k-1 (None for the background and absent codes).

    One pass of scipy.ndimage.find_objects over the foreground's box.
    """
    from scipy import ndimage

    if codes.dtype == bool:
        codes = codes.view(np.uint8)
    fg = foreground_box(codes) if k > 1 else None
    if fg is None:
        return [None] * k
    found = ndimage.find_objects(codes[fg], max_label=k - 1)
    start = [s.start for s in fg]
    shifted = [
        None if b is None else tuple(slice(s.start + o, s.stop + o) for s, o in zip(b, start)) for b in found
    ]
    return [None] + shifted + [None] * (k - 1 - len(shifted))


def _column_major(a: np.ndarray) -> bool:
    return a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous


def _parse_labels(labels) -> dict[int, str] | None:
    if labels is None:
        return None
    if isinstance(labels, Mapping):
        return {int(k): str(v) for k, v in labels.items()}
    return {int(v): str(int(v)) for v in labels}


def _targets(labels, regions, values: np.ndarray, boxes_p: list, boxes_g: list) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, label values, is a region) to score: the labels asked for (default: every one found), then the regions."""
    wanted = _parse_labels(labels)
    if wanted is None:
        wanted = {
            int(v): str(int(v))
            for i, v in enumerate(values.tolist())
            if i > 0 and (boxes_p[i] is not None or boxes_g[i] is not None)
        }
    targets: list[tuple[str, tuple[int, ...], bool]] = [
        (name, (value,), False) for value, name in sorted(wanted.items())
    ]
    for name, members in (regions or {}).items():
        targets.append((str(name), tuple(int(m) for m in members), True))
    return targets


def _masks_in_box(p: np.ndarray, g: np.ndarray, codes: list[int], boxes_p: list, boxes_g: list):
    """(pred mask, gt mask, true positives, pred count, gt count) of ``codes`` in the union of their boxes.

    The masks are None (and the counts 0) when neither image holds any of the codes.
    """
    box = union_box(*(boxes_p[c] for c in codes), *(boxes_g[c] for c in codes))
    if box is None:
        return None, None, 0, 0, 0
    # the box holds every voxel of both masks: counts in it are the image's counts
    crop_p, crop_g = p[box], g[box]
    if len(codes) == 1:
        mask_p, mask_g = crop_p == codes[0], crop_g == codes[0]
    else:
        mask_p, mask_g = np.isin(crop_p, codes), np.isin(crop_g, codes)
    n_pred, n_gt = int(np.count_nonzero(mask_p)), int(np.count_nonzero(mask_g))
    tp = int(np.count_nonzero(mask_p & mask_g))
    return mask_p, mask_g, tp, n_pred, n_gt


def evaluate(
    pred,
    gt,
    spacing=None,
    *,
    labels: Mapping[int, str] | Iterable[int] | None = None,
    regions: Mapping[str, Sequence[int]] | None = None,
    tolerance: float = 1.0,
    percentile: float = 95.0,
    surface: str = "voxel",
    empty_distance: float | None = None,
    distances: bool = True,
) -> list[LabelMetrics]:
    """Every metric for every label (and region) of two label images, in one pass.

    Args:
        pred, gt: integer label images of one shape (0 is background).
        spacing: voxel size per axis in mm; None means 1 (pixels).
        labels: labels to report ({value: name} or values); None means every
            non-zero value found in either image.
        regions: named unions of labels, e.g. {"whole_tumour": (1, 2, 3, 4)}.
        tolerance: NSD tolerance in mm.
        percentile: the q of HDq (95 gives HD95).
        surface: "voxel" (default) or "surfel"; see docs/metrics.md.
        empty_distance: distance reported instead of inf when exactly one mask is empty.
        distances: False skips every surface metric (overlap and volumes only).

    Returns one LabelMetrics per label (ascending), then one per region (given order).
    """
    pred, gt = check_pair(pred, gt)
    spacing = as_spacing(spacing, pred.ndim)
    if _column_major(pred) and _column_major(gt):
        # NIfTI arrays come column-major: work on the transposes (C order, no copy) with the spacing
        # reversed; every metric is the same under a permutation of the axes, and the masks, surfaces
        # and distance transforms made below are then all C order (mixing orders costs ~20x)
        pred, gt, spacing = pred.T, gt.T, tuple(reversed(spacing))
    check_surface(surface, pred.ndim if distances else 3)  # surfels need 2D or 3D only for distances
    values, p, g = _compact(pred, gt)
    k = len(values)
    boxes_p, boxes_g = label_boxes(p, k), label_boxes(g, k)  # one pass each, every label at once
    index_of = {int(v): i for i, v in enumerate(values.tolist())}
    targets = _targets(labels, regions, values, boxes_p, boxes_g)

    total = int(pred.size)
    voxel_volume = float(np.prod(spacing))
    results = []
    for name, members, is_region in targets:
        codes = sorted({index_of[m] for m in members if m in index_of and index_of[m] != 0})
        mask_p, mask_g, tp, n_pred, n_gt = _masks_in_box(p, g, codes, boxes_p, boxes_g)
        fp, fn = n_pred - tp, n_gt - tp
        overlap = overlap_from_counts(tp, fp, fn, total - tp - fp - fn, voxel_volume)
        dist = None
        if distances:
            if n_pred == 0 or n_gt == 0:
                sd = empty_surface_distances(n_pred, n_gt, surface)
            else:
                sd = surface_distances_in_box(mask_p, mask_g, spacing, surface)
            dist = summarise_distances(sd, tolerance, percentile, empty_distance)
        results.append(LabelMetrics(name, members, overlap, dist, is_region))
    return results

