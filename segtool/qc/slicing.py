"""Where to look in a 3D volume: RAS reorientation, slice choice, upright planes and tile sizes."""

from __future__ import annotations

from typing import Any

import numpy as np

from segtool.io.volume import spacing_of
from segtool.qc.crop import fit_hw

#: 3D views in the order they are rendered: name -> axis of the RAS array they slice.
VIEWS = {"axial": 2, "sagittal": 0, "coronal": 1}


def voxel_spacing(affine: np.ndarray, ndim: int) -> np.ndarray:
    """Voxel size along the first ``ndim`` axes of ``affine`` (1 where it is degenerate)."""
    zooms = np.asarray(spacing_of(affine, ndim))
    return np.where(np.isfinite(zooms) & (zooms > 0), zooms, 1.0)


def to_ras(arrays: list[np.ndarray], affine: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Reorient 3D arrays to the closest RAS+ axes of ``affine``; returns them and their spacing."""
    from nibabel.orientations import apply_orientation, io_orientation

    spacing = voxel_spacing(affine, 3)
    try:
        ornt = io_orientation(np.asarray(affine, float))
    except Exception:  # noqa: BLE001 - a degenerate affine: show the voxel order as is
        ornt = np.array([[0, 1], [1, 1], [2, 1]], float)
    if np.isnan(ornt).any():
        ornt = np.array([[0, 1], [1, 1], [2, 1]], float)
    new_spacing = np.empty(3)
    for axis in range(3):
        new_spacing[int(ornt[axis, 0])] = spacing[axis]
    return [apply_orientation(a, ornt) for a in arrays], new_spacing


def pick_slices(masks: list[np.ndarray], axis: int, n: int) -> list[int]:
    """Slices at evenly spaced quantiles of the mask voxels along ``axis``, else the centre."""
    shape = masks[0].shape
    other = tuple(a for a in range(masks[0].ndim) if a != axis)
    counts = sum(m.sum(axis=other, dtype=np.int64) for m in masks)
    total = int(counts.sum())
    if total == 0:
        return [shape[axis] // 2]
    cum = np.cumsum(counts)
    positions = [int(np.searchsorted(cum, (i + 0.5) / n * total, side="right")) for i in range(n)]
    return sorted(set(min(p, shape[axis] - 1) for p in positions))


def slice_plane(arr: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` of a RAS array along ``axis``, upright in radiological convention."""
    where: list[Any] = [slice(None)] * 3
    where[axis] = index
    return arr[tuple(where)].T[::-1, ::-1]  # basic indexing: a view, no copy


def plane_axes(axis: int) -> tuple[int, int]:
    """(row axis, column axis) of the RAS array in a :func:`slice_plane` along ``axis``."""
    # after .T the rows run along the last remaining axis, the columns along the first
    col_axis, row_axis = [a for a in range(3) if a != axis]
    return row_axis, col_axis


def tile_hw(shape: tuple[int, ...], spacing: np.ndarray, axis: int, size: int) -> tuple[int, int]:
    """Tile (rows, cols) for slices along ``axis``: square pixels in mm, sized by :func:`fit_hw`."""
    row_axis, col_axis = plane_axes(axis)
    return fit_hw(shape[row_axis] * spacing[row_axis], shape[col_axis] * spacing[col_axis], size)
