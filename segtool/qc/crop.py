"""Where a QC picture looks: the segmented structure's bounding box with a margin.

A box is one ``slice`` per array axis. :func:`structure_box` takes the bounding box of
every label (all masks together), widened on each side by half its extent or
``min_margin`` (in the units of ``spacing``: 20 mm for scans, 32 px for photos),
whichever is larger, and clipped to the array. With no label, the box is the whole
array. :func:`balanced` then widens the shorter side of a picture's plane so it is at
least 1/``MAX_ASPECT`` of the longer one (in mm), so no panel is a thin strip.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Margin on each side of the structure, as a fraction of its extent along that axis.
MARGIN_FRACTION = 0.5
#: Smallest margin on each side: scans (mm) and photos (pixels).
MIN_MARGIN_MM = 20.0
MIN_MARGIN_PX = 32.0
#: Longest side / shortest side of a cropped plane, at most (where the image allows).
MAX_ASPECT = 2.0

Box = tuple[slice, ...]


def whole(shape: Sequence[int]) -> Box:
    return tuple(slice(0, int(n)) for n in shape)


def structure_box(masks: Sequence[np.ndarray], spacing: Sequence[float], min_margin: float) -> Box:
    """The labels' bounding box plus max(MARGIN_FRACTION of its extent, ``min_margin``) per side."""
    shape = masks[0].shape
    union = np.zeros(shape, bool)
    for mask in masks:
        union |= np.asarray(mask) > 0
    if not union.any():
        return whole(shape)
    box = []
    for axis, n in enumerate(shape):
        other = tuple(a for a in range(len(shape)) if a != axis)
        hits = np.flatnonzero(union.any(axis=other))
        lo, hi = int(hits[0]), int(hits[-1]) + 1
        step = float(spacing[axis])
        margin = max(MARGIN_FRACTION * (hi - lo) * step, float(min_margin))
        voxels = math.ceil(margin / step - 1e-9)
        box.append(slice(max(0, lo - voxels), min(int(n), hi + voxels)))
    return tuple(box)


def balanced(box: Box, shape: Sequence[int], spacing: Sequence[float], axes: tuple[int, int]) -> Box:
    """``box`` with the shorter of ``axes`` (in mm) widened, centred, to >= longer / MAX_ASPECT."""
    out = list(box)
    extent = {a: (out[a].stop - out[a].start) * float(spacing[a]) for a in axes}
    longer = max(axes, key=lambda a: extent[a])
    shorter = axes[1] if longer == axes[0] else axes[0]
    need = extent[longer] / MAX_ASPECT
    if extent[shorter] >= need - 1e-9:
        return tuple(out)
    n = int(shape[shorter])
    want = min(n, math.ceil(need / float(spacing[shorter]) - 1e-9))
    centre = (out[shorter].start + out[shorter].stop) / 2.0
    start = min(max(0, int(round(centre - want / 2.0))), n - want)
    out[shorter] = slice(start, start + want)
    return tuple(out)


def fit_hw(rows_mm: float, cols_mm: float, size: int) -> tuple[int, int]:
    """(rows, cols) of a picture with square pixels in mm: the longer side ``size`` pixels,
    enlarged where needed so the shorter side is at least ``size // 2`` (longer side <= 4 * size)."""
    longer, shorter = max(rows_mm, cols_mm), min(rows_mm, cols_mm)
    mm_per_px = longer / float(size)
    min_side = max(1, int(size) // 2)
    if shorter / mm_per_px < min_side:
        mm_per_px = max(shorter / min_side, longer / (4.0 * size))
    return max(1, int(round(rows_mm / mm_per_px))), max(1, int(round(cols_mm / mm_per_px)))
